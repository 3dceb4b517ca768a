"""`charlm agree` on SyntaxGym suites: a directory the size of Hu et al. (2020)'s set (34 suites,
850 items, 3,400 sentences; corpora.agreement.suite_syntaxgym.write_benchmark_suites) scored by a
2 x 256 character LSTM (untrained, over the bundled corpus's characters, or --model), timed as a
user runs it: the whole command, starting TensorFlow included. Target: under 2 minutes on 2 cores.

Example:
    python scripts/bench_syntaxgym.py
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_show's model builder

TARGET_S = 120.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="A model to score with (default: an untrained 2x256 char LSTM).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from bench_show import build
    from corpora.agreement import default_suite_path
    from corpora.agreement.suite_syntaxgym import write_benchmark_suites
    from corpora.agreement.suite_tsv import read_suite

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        suites = write_benchmark_suites(folder / "suites", read_suite(default_suite_path()))
        model = Path(args.model) if args.model else build(256, folder)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "charlm", "agree", str(model), str(suites), "--json"],
                                capture_output=True, text=True, cwd=REPO)
        seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"charlm agree failed: {result.stderr.strip().splitlines()[-1]}")
    gym = json.loads(result.stdout)["syntaxgym"]
    report = {"suites": gym["n_suites"], "items": gym["n_items"], "skipped": gym["skipped"],
              "seconds": round(seconds, 2), "target_s": TARGET_S, "met": seconds < TARGET_S}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['suites']} suites, {report['items']} items ({report['skipped']} skipped): "
              f"{seconds:.1f} s for the whole command (target < {TARGET_S:g} s): "
              + ("met" if report["met"] else "NOT met"))


if __name__ == "__main__":
    main()
