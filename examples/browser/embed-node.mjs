// Embed texts with transformers.js in Node from a local model directory, nothing fetched from outside
// (feature-extractor.js: pipeline(), or for the T5 encoders the same pipeline built from its parts).
// Usage: node embed-node.mjs MODEL_DIR DTYPE POOLING NORMALIZE < texts.json > vectors.json
//   DTYPE: fp32 (onnx/model.onnx), q8 (onnx/model_quantized.onnx) or fp16 (onnx/model_fp16.onnx)
// tests/test_interop.py runs it and compares the vectors with jina-onnx's.
import { readFileSync } from "node:fs";
import path from "node:path";
import { env } from "@huggingface/transformers";
import { featureExtractor } from "./feature-extractor.js";

const [directory, dtype = "fp32", pooling = "mean", normalize = "true"] = process.argv.slice(2);
env.allowRemoteModels = false; // every file comes from the directory; a missing one is an error, not a download
env.localModelPath = path.dirname(path.resolve(directory));
const texts = JSON.parse(readFileSync(0, "utf8"));
const extractor = await featureExtractor(path.basename(directory), { dtype, device: "cpu" });
const output = await extractor(texts, { pooling, normalize: normalize === "true" });
process.stdout.write(JSON.stringify(output.tolist()));
