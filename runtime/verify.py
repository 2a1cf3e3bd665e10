"""`jina-onnx verify`: check an artifact end to end without PyTorch.

Every file the manifest names must match its sha256; every variant must load and, on the probe
texts stored at export, reproduce PyTorch's stored embeddings within the variant's gate.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import JinaOnnxError
from .gates import GATES
from .manifest import load_manifest, safe_member, sha256_file
from .probe import probe_parity


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str


def verify_artifact(directory: str | Path) -> list[Check]:
    """All checks of an artifact directory; the artifact is sound when every `Check.ok` is true.

    Example:
        >>> checks = verify_artifact("~/.cache/jina-onnx/jina-embedding-t-en-v1")  # doctest: +SKIP
        >>> all(c.ok for c in checks)  # doctest: +SKIP
        True
    """
    from .loader import open_option
    from .loadplan import Option

    directory = Path(directory).expanduser()
    try:
        manifest = load_manifest(directory)
    except JinaOnnxError as e:
        return [Check("manifest", False, str(e))]
    checks = [
        Check(
            "manifest",
            True,
            f"{manifest.name}, schema {manifest.schema_version}, "
            f"variants {', '.join(p.value for p in manifest.variants)}",
        )
    ]
    files = [(manifest.tokenizer.file, manifest.tokenizer.sha256)]
    files += [(v.file, v.sha256) for v in manifest.variants.values()]
    if manifest.probe is not None:
        files.append((manifest.probe.file, manifest.probe.sha256))
    for name, expected in files:
        checks.append(_checksum(directory, name, expected))
    if manifest.probe is None:
        checks.append(Check("probe", False, "the manifest records no probe set; re-export to get one"))
        return checks
    probe = json.loads(safe_member(directory, manifest.probe.file).read_text(encoding="utf-8"))
    texts, reference = probe["texts"], np.asarray(probe["embeddings"], dtype=np.float32)
    for precision, variant in manifest.variants.items():
        label = f"{precision.value} probe"
        try:
            model = open_option(
                directory, manifest, Option("onnxruntime", "cpu", precision.value, precision.value), None
            )
            measured = probe_parity(
                functools.partial(model.encode, normalize=False), texts, reference, probe["reference"]
            )
        except JinaOnnxError as e:
            checks.append(Check(label, False, str(e)))
            continue
        missed = GATES[precision].failures(measured)
        recorded = variant.parity
        detail = (
            f"max abs diff {measured.max_abs_diff:.2e} (export: {recorded.max_abs_diff:.2e}), "
            f"min cosine {measured.min_cosine:.6f} (export: {recorded.min_cosine:.6f}), "
            f"batch invariance {measured.batch_invariance:.6f}"
        )
        checks.append(Check(label, not missed, detail + (f"; FAILS {'; '.join(missed)}" if missed else "")))
    return checks


def _checksum(directory: Path, name: str, expected: str) -> Check:
    try:
        path = safe_member(directory, name)
    except JinaOnnxError as e:
        return Check(name, False, str(e))
    if not path.is_file():
        return Check(name, False, f"{path}: missing")
    actual = sha256_file(path)
    if actual != expected:
        return Check(name, False, f"{path}: sha256 {actual[:12]}... but the manifest says {expected[:12]}...")
    return Check(name, True, f"sha256 {actual[:12]}... ok")
