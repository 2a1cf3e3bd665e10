// transformers.js' feature-extraction pipeline for any jina-onnx export, in Node and in the browser (the page's
// import map points "@huggingface/transformers" at the web build).
//
// pipeline("feature-extraction", ...) picks the model class by config.model_type alone (AutoModel), and maps
// "t5" to its encoder-decoder T5Model, which opens onnx/encoder_model.onnx and a decoder; config.architectures
// only steers which files it lists, never the class, and transformers.js has no T5 encoder class. The export's
// config.json must keep model_type "t5" (transformers and sentence-transformers read it), so for a T5 encoder
// (architectures ["T5EncoderModel"]) this builds the same pipeline from transformers.js' own parts: its
// encoder-only base class on onnx/model.onnx, its tokenizer, its pooling. Every other model gets pipeline().
import {
  AutoConfig,
  AutoTokenizer,
  FeatureExtractionPipeline,
  PreTrainedModel,
  pipeline,
} from "@huggingface/transformers";

const ENCODER_ONLY = new Set(["T5EncoderModel"]); // architectures transformers.js would load as encoder-decoder

export async function featureExtractor(model, options = {}) {
  const config = await AutoConfig.from_pretrained(model);
  if (!(config.architectures ?? []).some((name) => ENCODER_ONLY.has(name))) {
    return pipeline("feature-extraction", model, options);
  }
  const [encoder, tokenizer] = await Promise.all([
    PreTrainedModel.from_pretrained(model, { ...options, config }), // onnx/model.onnx (or _quantized, _fp16)
    AutoTokenizer.from_pretrained(model),
  ]);
  return new FeatureExtractionPipeline({ task: "feature-extraction", model: encoder, tokenizer });
}
