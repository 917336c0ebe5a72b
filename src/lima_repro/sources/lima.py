"""GAIR/lima as a ready set: a local `train.jsonl`/`test.jsonl`, or the gated hub dataset with the user's token.

`hf:GAIR/lima/train.jsonl` in any `curate.*_files` list downloads that file (the token comes from
`HF_TOKEN` or `huggingface-cli login`); rows are read by `data.read_examples`, which knows the
`{"conversations": [...], "source": ...}` format.
"""
from __future__ import annotations

from ..data import DataError

HUB_PREFIX = "hf:"


def resolve_hub(spec: str) -> str:
    """`hf:OWNER/NAME/FILE` -> a local path of the downloaded file; other specs unchanged."""
    if not str(spec).startswith(HUB_PREFIX):
        return spec
    parts = str(spec)[len(HUB_PREFIX):].split("/")
    if len(parts) < 3:
        raise DataError(spec, None, "hub specs look like hf:OWNER/NAME/FILE", "e.g. hf:GAIR/lima/train.jsonl")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download
        return hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset")
    except Exception as e:  # gated repo, no token, offline: all end here with the same advice
        raise DataError(spec, None, f"cannot download from the hub ({type(e).__name__}: {e})",
                        "accept the dataset's terms on its hub page and set HF_TOKEN (or `huggingface-cli login`), "
                        "or download the file and give its local path") from e
