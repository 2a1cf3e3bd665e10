"""`jina-onnx verify`: check an artifact end to end without PyTorch.

Every file the manifest names must match its sha256; every variant must load and, on the probe
texts stored at export, reproduce PyTorch's stored embeddings within the variant's gate.

With `against=CHECKPOINT` (needs the `export` extra) the reference is computed now, by PyTorch from that
checkpoint, on the same probe texts: that gates a third-party export in the Hugging Face layout, which has no
manifest and no stored probe (`onnx/model.onnx`, and `onnx/model_quantized.onnx` / `onnx/model_fp16.onnx`
where present, each against its precision's gate), and rechecks one of ours against its source.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import hub
from .errors import JinaOnnxError, require
from .foreign import foreign_manifest, looks_foreign
from .gates import GATES
from .manifest import MANIFEST_FILE, load_manifest, safe_member, sha256_file
from .probe import PROBE_TEXTS, probe_parity


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str


def verify_artifact(directory: str | Path, against: str | Path | None = None) -> list[Check]:
    """All checks of an artifact directory; the artifact is sound when every `Check.ok` is true.

    Example:
        >>> checks = verify_artifact("~/.cache/jina-onnx/jina-embedding-t-en-v1")  # doctest: +SKIP
        >>> all(c.ok for c in checks)  # doctest: +SKIP
        True
        >>> checks = verify_artifact("all-MiniLM-L6-v2-onnx", against="all-MiniLM-L6-v2")  # doctest: +SKIP
    """
    from .loader import open_option
    from .loadplan import Option

    directory = Path(directory).expanduser()
    foreign = not (directory / MANIFEST_FILE).is_file() and looks_foreign(directory)
    try:
        manifest = foreign_manifest(directory, every_graph=True) if foreign else load_manifest(directory)
    except JinaOnnxError as e:
        return [Check("manifest", False, str(e))]
    variants = ", ".join(p.value for p in manifest.variants)
    if foreign:
        how = "gated below against PyTorch" if against else "pass --against CHECKPOINT to gate it against PyTorch"
        checks = [Check("manifest", against is not None, f"none: a third-party export ({variants}); {how}")]
    else:
        checks = [Check("manifest", True, f"{manifest.name}, schema {manifest.schema_version}, variants {variants}")]
        files = [(manifest.tokenizer.file, manifest.tokenizer.sha256)]
        files += [(v.file, v.sha256) for v in manifest.variants.values()]
        if manifest.probe is not None:
            files.append((manifest.probe.file, manifest.probe.sha256))
        files += list(manifest.files.items())
        hub.fetch_all(directory, [name for name, _ in files])  # a Hub id: every file, to check them all
        for name, expected in files:
            checks.append(_checksum(directory, name, expected))
    if against is not None:
        texts = list(PROBE_TEXTS)
        try:
            reference = _torch_reference(Path(against).expanduser(), texts)
        except JinaOnnxError as e:  # not a checkpoint, or the export extra missing: say so as a failed check
            return [*checks, Check("reference", False, str(e))]
        reference_name = f"PyTorch fp32 run now on {against}"
    elif manifest.probe is None:
        if not foreign:
            checks.append(Check("probe", False, "the manifest records no probe set; re-export to get one"))
        return checks
    else:
        probe = json.loads(safe_member(directory, manifest.probe.file).read_text(encoding="utf-8"))
        texts, reference_name = probe["texts"], probe["reference"]
        reference = np.asarray(probe["embeddings"], dtype=np.float32)
    # Which reference the probes below are measured against: the one stored at export, or PyTorch run now.
    stored = f" embeddings stored at export ({manifest.probe.file})" if manifest.probe is not None else ""
    source = reference_name if against is not None else reference_name + stored
    checks.append(Check("reference", True, f"{source}, {len(texts)} probe texts"))
    for precision, variant in manifest.variants.items():
        label = f"{precision.value} probe"
        try:
            model = open_option(
                directory, manifest, Option("onnxruntime", "cpu", precision.value, precision.value), None
            )
            encode = functools.partial(model.encode, normalize=False)
            measured = probe_parity(encode, texts, reference, reference_name)
        except JinaOnnxError as e:
            checks.append(Check(label, False, str(e)))
            continue
        missed = GATES[precision].failures(measured)
        recorded = variant.parity
        at_export = not foreign  # a third-party file has no export-time numbers to show beside today's
        detail = (
            f"max abs diff {measured.max_abs_diff:.2e}"
            + (f" (export: {recorded.max_abs_diff:.2e})" if at_export else "")
            + f", min cosine {measured.min_cosine:.6f}"
            + (f" (export: {recorded.min_cosine:.6f})" if at_export else "")
            + f", batch invariance {measured.batch_invariance:.6f}"
        )
        checks.append(Check(label, not missed, detail + (f"; FAILS {'; '.join(missed)}" if missed else "")))
    return checks


def _torch_reference(checkpoint: Path, texts: list[str]) -> np.ndarray:
    require("torch", "export")
    from jina_onnx.export.validate import checkpoint_embeddings

    return checkpoint_embeddings(checkpoint, texts)


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
