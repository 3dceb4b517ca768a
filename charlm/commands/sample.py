"""``charlm sample``: generate text from a model file."""

from __future__ import annotations

import json
import sys

import click

from charlm.errors import CharlmError


@click.command("sample")
@click.argument("model", type=click.Path())
@click.option("--prompt", "-p", default=None, help="Text to continue (primes the state in one pass).")
@click.option("--prompt-file", type=click.Path(), default=None, help="Read the prompt from this UTF-8 file.")
@click.option("--length", "-n", type=int, default=500, show_default=True,
              help="Tokens to generate (characters, bytes or words, as the model's tokenizer counts).")
@click.option("--stop", multiple=True, help="End a sample where this string appears (repeatable; not printed).")
@click.option("--temperature", "-t", type=float, default=None, help="Divide the logits by T > 0 [default: 1].")
@click.option("--greedy", is_flag=True, help="Always take the most likely token.")
@click.option("--top-k", type=int, default=None, help="Draw from the K most likely tokens only.")
@click.option("--top-p", type=float, default=None,
              help="Draw from the smallest set of most likely tokens whose probability reaches P (nucleus).")
@click.option("--num-samples", type=int, default=1, show_default=True, help="Independent samples, made as one batch.")
@click.option("--seed", type=int, default=None, help="Same model, prompt, flags and seed: same text [default: random].")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line and sample: prompt, text, tokens, seconds, seed, "
                   "unknown_prompt_chars, stopped.")
def command(model, prompt, prompt_file, as_json, num_samples, **settings):
    """Generate text from MODEL (a model.keras file written by charlm train).

    Plain output is the prompt followed by the generated text; one sample is
    printed as it is produced. Prompt characters the model never saw are
    read as its unknown symbol (--json says how many there were).
    """
    prompt = _read_prompt(prompt, prompt_file)
    from charlm.config import SampleConfig
    from charlm.nn.lm import load
    from charlm.sample import sampler_for

    config = SampleConfig(num_samples=num_samples, **settings)  # checks the flags before loading
    sampler = sampler_for(load(model))
    if as_json:
        for sample in sampler.run(prompt, config):
            click.echo(json.dumps(sample.to_dict(), ensure_ascii=False))
        return
    if num_samples == 1:
        _write(prompt)
        sampler.run(prompt, config, on_text=_write)
        _write("\n")
        return
    for index, sample in enumerate(sampler.run(prompt, config)):
        _write(f"{'' if index == 0 else chr(10)}--- sample {index + 1} of {num_samples} ---\n")
        _write(prompt + sample.text + "\n")


def _read_prompt(prompt, prompt_file) -> str:
    if prompt is not None and prompt_file is not None:
        raise CharlmError("give either --prompt or --prompt-file, not both")
    if prompt_file is None:
        return prompt or ""
    try:
        with open(prompt_file, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise CharlmError(f"prompt file not found: {prompt_file}") from None
    except UnicodeDecodeError:
        raise CharlmError(f"prompt file {prompt_file} is not UTF-8 text") from None
    except OSError as error:
        raise CharlmError(f"cannot read prompt file {prompt_file}: {error.strerror}") from None


def _write(text: str):
    # Straight to stdout and flushed, so text appears as it is generated.
    sys.stdout.write(text)
    sys.stdout.flush()
