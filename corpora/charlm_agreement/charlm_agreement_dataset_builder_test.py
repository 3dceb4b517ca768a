"""TFDS's own builder test: ``python -m pytest corpora/charlm_agreement``."""

import pytest

pytest.importorskip("dill", reason="tfds.testing needs dill (pip install dill)")

import tensorflow_datasets as tfds  # noqa: E402

from corpora.charlm_agreement import charlm_agreement_dataset_builder  # noqa: E402


class CharlmAgreementTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = charlm_agreement_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["default"]
    SPLITS = {"train": 1, "validation": 1}
    SKIP_CHECKSUMS = True  # nothing is downloaded


if __name__ == "__main__":
    tfds.testing.test_main()
