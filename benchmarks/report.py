"""Turns a suite result (the JSON) into the Markdown table, the three PNG plots and docs/performance.md's results block.

The Markdown is a pure function of the JSON, so docs/performance.md can be checked against the JSON it names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE = ROOT / "docs" / "performance.md"  # where the latest full run is shown
START, END = "<!-- benchmark-results:start -->", "<!-- benchmark-results:end -->"
ORDER = (
    "torch fp32",
    "torch fp16",
    "ST ONNX fp32",
    "ST ONNX int8",
    "ST OpenVINO default",
    "fastembed fp32",
    "jina-onnx fp32",
    "jina-onnx fp32-opt",
    "jina-onnx fp16",
    "jina-onnx int8",
    "jina-onnx bf16",
)
PLOTS = ("throughput", "batch-speedup", "quality-speed")
SECTIONS = {"short": "short text", "long": "long text", "fixed128_b32": "128 tokens, batch 32"}
# On CUDA the table shows the GPU-sized batches the suite adds there (short and 128-token texts at batch 256).
CUDA_SECTIONS = {"short_b256": "short text, batch 256", "long": "long text", "fixed128_b256": "128 tokens, batch 256"}
# Headline columns: (key, label) per device. On CUDA the fast variant is fp16, compared with torch fp16.
HEADLINE = {
    "cpu": (
        ("fast", "int8 vs torch fp32"),
        ("torch fp32", "fp32 vs torch fp32"),
        ("st fp32", "fp32 vs ST ONNX fp32"),
        ("st int8", "int8 vs ST ONNX int8"),
        ("fastembed", "fp32 vs fastembed fp32"),
    ),
    "cuda": (
        ("fast", "fp16 vs torch fp16"),
        ("fast vs fp32", "fp16 vs torch fp32"),
        ("torch fp32", "fp32 vs torch fp32"),
        ("st fp32", "fp32 vs ST ONNX fp32"),
        ("fastembed", "fp32 vs fastembed fp32"),
    ),
}


BF16_HEADLINE = (("bf16", "bf16 (OpenVINO) vs torch fp32"), ("st openvino", "bf16 vs ST OpenVINO default"))


def sections_of(data: dict) -> dict[str, str]:
    return CUDA_SECTIONS if data.get("device") == "cuda" else SECTIONS


def ordered(labels) -> list[str]:  # type: ignore[no-untyped-def]
    rank = {label: i for i, label in enumerate(ORDER)}
    return sorted(labels, key=lambda label: (rank.get(label, len(ORDER)), label))


def plot_names(stem: str) -> list[str]:
    return [f"{stem}-{kind}.png" for kind in PLOTS]


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def describe_machine(data: dict) -> str:
    facts = data["machine"]
    text = (
        f"{facts['cpu']}, {facts['physical_cores']} physical cores ({', '.join(facts['cpu_flags']) or 'no AVX'}), "
        f"{data['threads']} threads"
    )
    if data["device"] == "cuda":
        text = f"{facts.get('gpu', 'CUDA GPU')} ({facts.get('gpu_memory', '?')}), host: " + text
    return text


def headline(model: dict, section: str) -> dict[str, str]:
    """Ours over each baseline in one section, as 'x.xx' strings; '' where either side did not run."""
    results = model["throughput"].get(section, {})

    def ratio(ours: str, theirs: str) -> str:
        if ours in results and theirs in results:
            return f"{results[ours]['texts_per_s'] / results[theirs]['texts_per_s']:.2f}x"
        return "n/a"

    return {
        "fast": ratio("jina-onnx int8", "torch fp32")
        if "jina-onnx int8" in results
        else ratio("jina-onnx fp16", "torch fp16"),
        "fast vs fp32": ratio("jina-onnx fp16", "torch fp32"),
        "torch fp32": ratio("jina-onnx fp32", "torch fp32"),
        "st fp32": ratio("jina-onnx fp32", "ST ONNX fp32"),
        "st int8": ratio("jina-onnx int8", "ST ONNX int8"),
        "fastembed": ratio("jina-onnx fp32", "fastembed fp32"),
        "bf16": ratio("jina-onnx bf16", "torch fp32"),
        "st openvino": ratio("jina-onnx bf16", "ST OpenVINO default"),
    }


def render_markdown(data: dict, image_prefix: str = "", heading: str = "###") -> str:
    settings = data["settings"]
    lines = [
        f"{heading} {data['machine_name']}, {data['machine']['date']} ({data['mode']} run)",
        "",
        f"Machine: {describe_machine(data)}; device {data['device']}; onnxruntime {data['machine']['onnxruntime']}"
        f". Command: `{data['command']}` ({data['wall_s'] / 60:.1f} min). Models t, s, b, l are the exact "
        "configs with seeded random weights (same compute as the real ones); MiniLM is the real "
        "all-MiniLM-L6-v2.",
        "",
        f"Throughput in texts/s, median of {settings['rounds']} alternating rounds after a warm-up; in "
        "brackets the speedup over torch fp32 (sentence-transformers) in the same run. Short: "
        f"{settings['short_texts']} STS-dev sentences; long: {settings['long_texts']} passages of 400-511 "
        "tokens"
        + (" (MiniLM, whose maximum is 256: 191-255)" if "minilm" in data["models"] else "")
        + "; batch 32. Latency: one sentence per call. Cold start: import + load + first encode in a fresh "
        f"process (median of {settings['cold_repeats']}); peak RSS: of the first such process, after it embeds "
        "256 short and 8 long texts. Cosine: min over the short and long texts against torch fp32.",
        "",
        "| model | runner | "
        + " | ".join(
            name.replace("short text", "short").replace("long text", "long") for name in sections_of(data).values()
        )
        + " | latency p50 / p99 ms | cold start s | peak RSS MB | min cosine |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, model in data["models"].items():
        for label in ordered(model["runners"]):
            state = model["runners"][label]
            if state["status"] != "ok" and label not in model["throughput"].get("short", {}):
                lines.append(f"| {size} | {label} | {state['status']}: {_escape(state['reason'])} ||||||| ")
                continue
            cells = []
            for section in sections_of(data):
                r = model["throughput"].get(section, {}).get(label)
                ratio = model["speedup_vs_torch_fp32"].get(section, {}).get(label)
                cells.append(
                    "failed"
                    if r is None
                    else f"{_num(r['texts_per_s'])}" + (f" ({ratio:.2f}x)" if ratio is not None else "")
                )
            lat = model["latency"].get(label)
            cells.append(f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f}" if lat else "")
            cold = model["cold_start"].get(label, {})
            cells.append(f"{cold['total_s']:.2f}" if "total_s" in cold else cold.get("error", ""))
            cells.append(f"{cold['peak_rss_mb']:,.0f}" if "peak_rss_mb" in cold else "")
            quality = model["quality_vs_torch_fp32"].get(label)
            cells.append(f"{quality['min_cosine']:.6f}" if quality else "")
            lines.append(f"| {size} | {label} | " + " | ".join(cells) + " |")
    batches = sorted(int(b) for b in settings["fixed_texts"])
    lines += [
        "",
        "Speedup over torch fp32 on 128-token texts by batch size:",
        "",
        "| model | runner | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|---|" + "---|" * len(batches),
    ]
    for size, model in data["models"].items():
        for label in ordered(model["throughput"].get("fixed128_b1", {})):
            if label == "torch fp32":
                continue
            cells = [model["speedup_vs_torch_fp32"].get(f"fixed128_b{b}", {}).get(label) for b in batches]
            lines.append(f"| {size} | {label} | " + " | ".join("" if c is None else f"{c:.2f}x" for c in cells) + " |")
    columns = HEADLINE["cuda" if data.get("device") == "cuda" else "cpu"]
    if any("jina-onnx bf16" in model["runners"] for model in data["models"].values()):
        columns = (*columns, *BF16_HEADLINE)  # runs with the OpenVINO rows; older results render as they were
    lines += [
        "",
        "Headline ratios, jina-onnx over each baseline (texts/s; "
        + " / ".join(sections_of(data).values())
        .replace("short text", "short")
        .replace("long text", "long")
        .replace("128 tokens, batch", "128 tokens batch")
        + "):",
        "",
        "| model | " + " | ".join(label for _, label in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for size, model in data["models"].items():
        per = [headline(model, section) for section in sections_of(data)]
        cells = [" / ".join(h[key] for h in per) for key, _ in columns]
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    lines += options_table(data)
    lines += efficiency_table(data)
    minilm = data["minilm"]
    lines += [
        "",
        f"Quality on real weights: all-MiniLM-L6-v2, STS-dev Spearman x100 over {minilm['pairs']} pairs "
        "(texts/s from that single pass):",
        "",
        "| runner | Spearman | texts/s |",
        "|---|---|---|",
    ]
    for label in ordered(minilm["runners"]):
        r = minilm["runners"][label]
        lines.append(
            f"| {label} | {r['spearman']:.2f} | {_num(r['texts_per_s'])} |"
            if "spearman" in r
            else f"| {label} | {_escape(r['error'])} | |"
        )
    lines.append("")
    lines += [f"![{kind}]({image_prefix}{name})" for kind, name in zip(PLOTS, plot_names(data["stem"]))]
    return "\n".join(lines) + "\n"


def efficiency_table(data: dict) -> list[str]:
    """encode / raw session per jina-onnx runner and section: how much of the engine the package delivers.
    Empty for results from before the suite measured it."""
    rows = []
    for size, model in data["models"].items():
        labels = ordered(
            {label for results in model["throughput"].values() for label, r in results.items() if "efficiency" in r}
        )
        for label in labels:
            cells = []
            for section in model["throughput"]:
                r = model["throughput"][section].get(label, {})
                cells.append(f"{r['efficiency']:.2f} ({_num(r['raw_texts_per_s'])}/s raw)" if "efficiency" in r else "")
            rows.append(f"| {size} | {label} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    sections = list(next(iter(data["models"].values()))["throughput"])
    return [
        "",
        "Efficiency: texts/s through `encode` over texts/s of the bare session running the same batches "
        "pre-tokenized and pre-padded (1.00 = nothing lost on the host side):",
        "",
        "| model | runner | " + " | ".join(sections) + " |",
        "|---|---|" + "---|" * len(sections),
        *rows,
    ]


def options_table(data: dict) -> list[str]:
    """One row per jina-onnx option (engine x precision): speedup over torch fp32 at 128 tokens, batch 32, per
    model, and the real MiniLM's STS Spearman. Only for runs with the OpenVINO rows (older results render as
    they were)."""
    if data.get("device") == "cuda" or not any("jina-onnx bf16" in m["runners"] for m in data["models"].values()):
        return []
    engine = {"bf16": "OpenVINO"}
    labels = ordered(
        {label for m in data["models"].values() for label in m["runners"] if label.startswith("jina-onnx")}
    )
    minilm = data["minilm"]["runners"]
    reference = minilm.get("torch fp32", {}).get("spearman")
    lines = [
        "",
        "CPU options, jina-onnx by engine and precision: speedup over torch fp32 (sentence-transformers) "
        "on 128-token texts at batch 32, same run; STS-dev Spearman x100 of the real all-MiniLM-L6-v2"
        + (f" (torch fp32: {reference:.2f})" if reference is not None else "")
        + ":",
        "",
        "| engine | precision | " + " | ".join(data["models"]) + " | MiniLM Spearman |",
        "|---|---|" + "---|" * (len(data["models"]) + 1),
    ]
    for label in labels:
        precision = label.split(" ", 1)[1]
        cells = []
        for model in data["models"].values():
            ratio = model["speedup_vs_torch_fp32"].get("fixed128_b32", {}).get(label)
            cells.append("" if ratio is None else f"{ratio:.2f}x")
        spearman = minilm.get(label, {}).get("spearman")
        cells.append("" if spearman is None else f"{spearman:.2f}")
        lines.append(f"| {engine.get(precision, 'ONNX Runtime')} | {precision} | " + " | ".join(cells) + " |")
    return lines


def _escape(text: str) -> str:
    return text.replace("|", "\\|")[:160]


def plots(data: dict, out: Path, stem: str) -> list[Path]:
    """Three PNGs: throughput by model and runner, speedup vs batch size, and quality vs speed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [out / name for name in plot_names(stem)]
    models = data["models"]
    labels = ordered({label for m in models.values() for label in m["runners"]})
    colors = {label: plt.get_cmap("tab10")(i) for i, label in enumerate(ORDER)}
    title = f"{data['machine_name']}, {data['machine']['date']}"

    sections = sections_of(data)
    figure, axes = plt.subplots(1, len(sections), figsize=(5.5 * len(sections), 4.5), squeeze=False)
    width = 0.8 / max(len(labels), 1)
    for ax, (section, name) in zip(axes[0], sections.items()):
        for j, label in enumerate(labels):
            for i, model in enumerate(models.values()):
                r = model["throughput"].get(section, {}).get(label)
                x = i + (j - (len(labels) - 1) / 2) * width
                if r is None:
                    ax.text(
                        x,
                        0.02,
                        "n/a",
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        transform=ax.get_xaxis_transform(),
                    )
                    continue
                error = [[r["texts_per_s"] - r["texts_per_s_min"]], [r["texts_per_s_max"] - r["texts_per_s"]]]
                ax.bar(
                    x,
                    r["texts_per_s"],
                    width,
                    yerr=error,
                    color=colors.get(label),
                    hatch="//" if label.startswith("torch") else None,
                    edgecolor="black",
                    linewidth=0.4,
                    label=label if i == 0 else None,
                )
        ax.set_xticks(range(len(models)), list(models))
        ax.set_xlabel("model")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("texts / s (log)")
    _save_with_shared_legend(
        figure, axes[0][0], paths[0], f"Throughput, {title} (bars: median, whiskers: min-max)", top=0.95
    )

    figure, axes = plt.subplots(1, len(models), figsize=(max(4.2 * len(models), 6.5), 4), squeeze=False)
    batches = sorted(int(b) for b in data["settings"]["fixed_texts"])
    for ax, (size, model) in zip(axes[0], models.items()):
        for label in labels:
            points = [(b, model["speedup_vs_torch_fp32"].get(f"fixed128_b{b}", {}).get(label)) for b in batches]
            points = [(b, v) for b, v in points if v is not None]
            if points and label != "torch fp32":
                ax.plot(*zip(*points), marker="o", color=colors.get(label), label=label)
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch size (128-token texts)")
        ax.set_title(f"model {size}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("speedup over torch fp32")
    _save_with_shared_legend(figure, axes[0][0], paths[1], f"Speedup vs batch size, {title}", top=0.93)

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    markers = dict(zip(models, "osD^v"))
    for size, model in models.items():
        for label, quality in model["quality_vs_torch_fp32"].items():
            speed = model["speedup_vs_torch_fp32"].get("short", {}).get(label)
            if speed is not None:
                left.scatter(
                    speed,
                    quality["min_cosine"],
                    color=colors.get(label),
                    marker=markers[size],
                    s=40,
                    edgecolor="black",
                    linewidth=0.4,
                )
    for label in labels:
        left.scatter([], [], color=colors.get(label), label=label)
    for size, marker in markers.items():
        left.scatter([], [], color="white", edgecolor="black", marker=marker, label=f"model {size}")
    left.set_xlabel("speedup over torch fp32 (short text)")
    left.set_ylabel("min cosine to torch fp32")
    left.set_title("Jina configs: agreement vs speed")
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    for label, r in data["minilm"]["runners"].items():
        if "spearman" in r:
            right.scatter(
                r["texts_per_s"],
                r["spearman"],
                color=colors.get(label),
                s=50,
                edgecolor="black",
                linewidth=0.4,
                label=label,
            )
    right.set_xlabel("texts / s (one pass over STS-dev)")
    right.set_ylabel("STS-dev Spearman x100")
    right.set_title("all-MiniLM-L6-v2 (real weights): quality vs speed")
    right.grid(alpha=0.3)
    right.legend(fontsize=7)  # fp32 runners share one Spearman: labels next to the points would overlap
    figure.suptitle(f"Quality vs speed, {title}")
    figure.tight_layout()
    figure.savefig(paths[2], dpi=110)
    plt.close(figure)
    return paths


def _save_with_shared_legend(figure, ax, path: Path, title: str, top: float) -> None:  # type: ignore[no-untyped-def]
    """One legend under all panels (taken from `ax`), a title on top, then write and free the figure."""
    import matplotlib.pyplot as plt

    handles, names = ax.get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=min(len(names), 5), fontsize=8)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.1, 1, top))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def results_block(json_path: Path, document: Path = PERFORMANCE) -> str:
    """The results block of docs/performance.md for a results JSON stored under benchmarks/results/."""
    import os

    data = json.loads(json_path.read_text())
    prefix = os.path.relpath(json_path.parent, document.parent).replace(os.sep, "/") + "/"
    command = json_path.relative_to(ROOT).as_posix()
    return (
        f"{START}\nFrom [`{prefix}{json_path.name}`]({prefix}{json_path.name}), generated by "
        f"`python -m benchmarks publish {command}`; regenerate it that way rather than editing it by hand.\n\n"
        + render_markdown(data, image_prefix=prefix)
        + END
    )


def publish(json_path: Path, document: Path = PERFORMANCE) -> None:
    """Replace the results block of `document` with the one for `json_path`."""
    text = document.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"error: {document} has no {START} ... {END} block to replace")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    document.write_text(pattern.sub(lambda _: results_block(json_path, document), text, count=1))


def published_json(document: Path = PERFORMANCE) -> Path | None:
    """The results JSON that the document's results block was generated from."""
    match = re.search(re.escape(START) + r"\nFrom \[`([^`]+)`\]", document.read_text())
    return (document.parent / match.group(1)).resolve() if match else None
