// Embeds the seed sentences with transformers.js (WebAssembly) from the model directory serve.py serves,
// and shows their cosine similarities. window.jinaOnnx holds the numbers for tests (tests/test_interop.py).
import { env } from "@huggingface/transformers"; // the web build, by index.html's import map
import { featureExtractor } from "./feature-extractor.js";

const status = document.getElementById("status");
try {
  const page = await (await fetch("/page.json")).json();
  env.allowRemoteModels = false; // nothing from the Hub: the model directory is served under /models/
  env.allowLocalModels = true;
  env.localModelPath = "/models/";
  env.useBrowserCache = false; // always the files on disk, never an older copy from the Cache API
  env.backends.onnx.wasm.wasmPaths = "/vendor/onnxruntime-web/";
  document.getElementById("about").textContent =
    `${page.model}: onnx/${page.dtype === "q8" ? "model_quantized" : "model"}.onnx, ` +
    `${page.pooling} pooling${page.normalize ? ", normalized" : ""}, transformers.js on WebAssembly`;
  const started = performance.now();
  const extractor = await featureExtractor(page.model, { dtype: page.dtype, device: "wasm" });
  const output = await extractor(page.texts, { pooling: page.pooling, normalize: page.normalize });
  const vectors = output.tolist();
  const seconds = (performance.now() - started) / 1000;
  const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const cosine = vectors.map((a) => vectors.map((b) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm(a) * norm(b))));
  const table = document.getElementById("similarity");
  table.innerHTML =
    "<tr><th class=text>cosine similarity</th>" + page.texts.map((_, j) => `<th>${j + 1}</th>`).join("") + "</tr>" +
    page.texts
      .map((text, i) => `<tr><td class=text>${i + 1}. ${text}</td>` + cosine[i].map((c) => `<td>${c.toFixed(4)}</td>`).join("") + "</tr>")
      .join("");
  status.textContent = `${vectors.length} texts, ${vectors[0].length} dimensions, ${seconds.toFixed(1)} s including loading`;
  window.jinaOnnx = { texts: page.texts, vectors, cosine };
} catch (error) {
  status.className = "error";
  status.textContent = `Failed: ${error?.stack || error}`;
  window.jinaOnnx = { error: String(error?.stack || error) };
}
