//! The CLIP BPE tokenizer, run by the `tokenizers` crate, padded and truncated to 77 tokens exactly as
//! Stable Diffusion's `CLIPTokenizer(padding="max_length", truncation=True)` does.
//!
//! A model folder's `tokenizer/` holds either a `tokenizer.json` or, as SD checkpoints ship it, CLIP's
//! `vocab.json` + `merges.txt`; the latter are assembled into the same pipeline transformers builds
//! (NFC + whitespace collapse + lowercase, CLIP's split regex, byte-level BPE with `</w>` word ends).

use serde::Deserialize;
use serde_json::json;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// Largest tokenizer file we read (CLIP's tokenizer.json is 3.6 MB).
pub const MAX_TOKENIZER_BYTES: usize = 64 << 20;

/// CLIP's pre-tokenization regex (transformers' `CLIPTokenizer`).
const CLIP_SPLIT: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// `tokenizer_config.json` fields that change the encoding.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct TokenizerConfig {
    model_max_length: f64,
    pad_token: Option<serde_json::Value>,
    bos_token: Option<serde_json::Value>,
    eos_token: Option<serde_json::Value>,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self { model_max_length: 77.0, pad_token: None, bos_token: None, eos_token: None }
    }
}

/// A token given either as a string or as transformers' `AddedToken` object.
fn token_text(v: &Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    }
}

/// The files of a `tokenizer/` folder, read by the caller (from disk or over HTTP).
#[derive(Default)]
pub struct TokenizerFiles {
    /// `tokenizer.json`, if present.
    pub tokenizer_json: Option<Vec<u8>>,
    /// `vocab.json`, used when there is no `tokenizer.json`.
    pub vocab_json: Option<Vec<u8>>,
    /// `merges.txt`, used with `vocab.json`.
    pub merges_txt: Option<Vec<u8>>,
    /// `tokenizer_config.json` (pad token, maximum length).
    pub config_json: Option<Vec<u8>>,
    /// `special_tokens_map.json`: in a config saved without `added_tokens_decoder` (older transformers, as
    /// SD 2.x's with its pad token "!"), its tokens override the config's, as transformers reads them.
    pub special_tokens_map_json: Option<Vec<u8>>,
}

/// Stable Diffusion's prompt tokenizer.
pub struct ClipTokenizer {
    inner: Tokenizer,
    max_length: usize,
}

fn utf8(name: &str, bytes: &[u8]) -> Result<String> {
    if bytes.len() > MAX_TOKENIZER_BYTES {
        return Err(Error::Tokenizer(format!(
            "{name} is {} bytes, over the {MAX_TOKENIZER_BYTES}-byte limit",
            bytes.len()
        )));
    }
    String::from_utf8(bytes.to_vec()).map_err(|e| Error::Tokenizer(format!("{name} is not UTF-8: {e}")))
}

/// Builds transformers' CLIP `tokenizer.json` from `vocab.json` + `merges.txt`.
fn clip_tokenizer_json(vocab: &str, merges: &str, bos: &str, eos: &str) -> Result<String> {
    let vocab: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(vocab).map_err(|e| Error::Tokenizer(format!("vocab.json: {e}")))?;
    clip_pipeline_json(vocab, merges.lines().filter(|l| !l.starts_with("#version")).collect(), bos, eos)
}

/// The CLIP tokenizer pipeline around a BPE vocabulary and merge list.
fn clip_pipeline_json(
    vocab: serde_json::Map<String, serde_json::Value>,
    merges: Vec<&str>,
    bos: &str,
    eos: &str,
) -> Result<String> {
    let id = |t: &str| {
        vocab.get(t).and_then(|v| v.as_u64()).ok_or_else(|| Error::Tokenizer(format!("vocab.json has no token {t}")))
    };
    let (bos_id, eos_id) = (id(bos)?, id(eos)?);
    let merges: Vec<&str> = merges.into_iter().filter(|l| !l.trim().is_empty()).collect();
    if let Some(bad) = merges.iter().find(|m| m.split(' ').count() != 2) {
        return Err(Error::Tokenizer(format!("merges.txt line is not a pair: {bad:?}")));
    }
    let added = |id: u64, content: &str| json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(bos_id, bos), added(eos_id, eos)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_SPLIT}, "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": {"type": "RobertaProcessing", "sep": [eos, eos_id], "cls": [bos, bos_id], "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": eos, "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    Ok(doc.to_string())
}

/// Trains a small CLIP-style byte-level BPE vocabulary (`vocab_size` tokens at most, `<|startoftext|>` = 0,
/// `<|endoftext|>` = 1) on `corpus`, for a model whose captions use few words: CLIP's 49408-token table
/// would dominate a browser-sized text encoder. Returns the `tokenizer.json` text.
pub fn train_clip_bpe(corpus: &[String], vocab_size: usize) -> Result<String> {
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::bpe::BpeTrainerBuilder;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let (bos, eos) = ("<|startoftext|>", "<|endoftext|>");
    let mut vocab = serde_json::Map::new();
    vocab.insert(bos.into(), 0.into());
    vocab.insert(eos.into(), 1.into());
    let mut tok: Tokenizer = clip_pipeline_json(vocab, vec![], bos, eos)?
        .parse()
        .map_err(|e| Error::Tokenizer(format!("tokenizer template: {e}")))?;
    let specials = [bos, eos].map(|t| tokenizers::AddedToken::from(t, true)).to_vec();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .end_of_word_suffix("</w>".into())
        .build();
    // Every printable ASCII character as a word of its own, so any prompt ends its words in known tokens.
    let ascii: String = (33u8..127).map(|c| format!("{} ", c as char)).collect();
    let lines = corpus.iter().cloned().chain(std::iter::once(ascii));
    tok.train(&mut TrainerWrapper::BpeTrainer(trainer), lines)
        .map_err(|e| Error::Tokenizer(format!("BPE training: {e}")))?;
    tok.to_string(false).map_err(|e| Error::Tokenizer(e.to_string()))
}

impl ClipTokenizer {
    /// Builds the tokenizer from a `tokenizer/` folder's files.
    pub fn from_files(files: &TokenizerFiles) -> Result<Self> {
        let json_object = |name: &str, bytes: &Option<Vec<u8>>| -> Result<serde_json::Map<String, serde_json::Value>> {
            match bytes {
                Some(b) => serde_json::from_str(&utf8(name, b)?).map_err(|e| Error::Tokenizer(format!("{name}: {e}"))),
                None => Ok(Default::default()),
            }
        };
        let mut fields = json_object("tokenizer_config.json", &files.config_json)?;
        if !fields.contains_key("added_tokens_decoder") {
            for (key, value) in json_object("special_tokens_map.json", &files.special_tokens_map_json)? {
                if ["pad_token", "bos_token", "eos_token"].contains(&key.as_str()) {
                    fields.insert(key, value);
                }
            }
        }
        let config: TokenizerConfig = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| Error::Tokenizer(format!("tokenizer_config.json: {e}")))?;
        let bos = token_text(&config.bos_token).unwrap_or_else(|| "<|startoftext|>".into());
        let eos = token_text(&config.eos_token).unwrap_or_else(|| "<|endoftext|>".into());
        let json = match (&files.tokenizer_json, &files.vocab_json, &files.merges_txt) {
            (Some(t), _, _) => utf8("tokenizer.json", t)?,
            (None, Some(v), Some(m)) => {
                clip_tokenizer_json(&utf8("vocab.json", v)?, &utf8("merges.txt", m)?, &bos, &eos)?
            }
            _ => return Err(Error::Tokenizer("need tokenizer.json, or vocab.json and merges.txt".into())),
        };
        // Built from vocab.json and merges.txt when there is no tokenizer.json: name what the user gave.
        let source = if files.tokenizer_json.is_some() { "tokenizer.json" } else { "vocab.json/merges.txt" };
        let mut inner: Tokenizer = json.parse().map_err(|e| Error::Tokenizer(format!("{source}: {e}")))?;
        // transformers stores a huge sentinel when there is no limit; SD's is 77. Below 2 there is no room
        // for the start and end tokens.
        let length = config.model_max_length;
        if length.is_nan() || length < 2.0 {
            return Err(Error::Tokenizer(format!(
                "tokenizer_config.json: model_max_length {length} leaves no room for the start and end tokens"
            )));
        }
        let max_length = if length <= 4096.0 { length as usize } else { 77 };
        let pad = token_text(&config.pad_token).unwrap_or_else(|| eos.clone());
        let pad_id = inner
            .token_to_id(&pad)
            .ok_or_else(|| Error::Tokenizer(format!("pad token {pad:?} is not in the vocabulary")))?;
        inner
            .with_truncation(Some(TruncationParams { max_length, ..Default::default() }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            pad_id,
            pad_token: pad,
            ..Default::default()
        }));
        Ok(Self { inner, max_length })
    }

    /// Reads a `tokenizer/` folder from disk.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            let path = dir.join(name);
            if !path.exists() {
                return Ok(None);
            }
            let len = std::fs::metadata(&path).map_err(|source| Error::Io { path: path.clone(), source })?.len();
            if len > MAX_TOKENIZER_BYTES as u64 {
                return Err(Error::Tokenizer(format!("{} is {len} bytes, over the limit", path.display())));
            }
            std::fs::read(&path).map(Some).map_err(|source| Error::Io { path, source })
        };
        Self::from_files(&TokenizerFiles {
            tokenizer_json: read("tokenizer.json")?,
            vocab_json: read("vocab.json")?,
            merges_txt: read("merges.txt")?,
            config_json: read("tokenizer_config.json")?,
            special_tokens_map_json: read("special_tokens_map.json")?,
        })
    }

    /// Token ids of `prompt`: BOS, the prompt's tokens (truncated), EOS, then padding, `max_length` in all.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(prompt, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let ids = enc.get_ids().to_vec();
        debug_assert_eq!(ids.len(), self.max_length);
        Ok(ids)
    }

    /// Sequence length of every encoding (77 for SD).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Number of tokens in the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token, e.g. `<|endoftext|>` (whose hidden state CLIP pools).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

#[cfg(test)]
mod tests {
    //! transformers' behaviour in the special-tokens test is printed by `scripts/reference_values.py`.
    use super::*;

    #[test]
    fn special_tokens_map_overrides_a_legacy_config_as_transformers_does() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sd/tokenizer");
        let file = |name: &str| Some(std::fs::read(dir.join(name)).unwrap());
        let files = |config: &str, map: Option<&str>| TokenizerFiles {
            vocab_json: file("vocab.json"),
            merges_txt: file("merges.txt"),
            config_json: Some(config.as_bytes().to_vec()),
            special_tokens_map_json: map.map(|m| m.as_bytes().to_vec()),
            ..Default::default()
        };
        let last = |f: TokenizerFiles| *ClipTokenizer::from_files(&f).unwrap().encode("a").unwrap().last().unwrap();
        let tok = ClipTokenizer::from_files(&files("{}", None)).unwrap();
        let (eos, bang) = (tok.inner.token_to_id("<|endoftext|>").unwrap(), tok.inner.token_to_id("!").unwrap());
        let legacy = r#"{"pad_token": "<|endoftext|>", "model_max_length": 77}"#;
        // SD 2.x's tokenizer folder: the config says one pad token, special_tokens_map.json another. With these
        // files transformers' CLIPTokenizer pads with "!" (id 0), and with added_tokens_decoder with EOS.
        let map = r#"{"pad_token": "!", "eos_token": {"content": "<|endoftext|>", "lstrip": false}}"#;
        assert_eq!(last(files(legacy, None)), eos);
        assert_eq!(last(files(legacy, Some(map))), bang, "special_tokens_map.json's pad token wins");
        // A config saved with added_tokens_decoder is read alone.
        let modern = r#"{"pad_token": "<|endoftext|>", "added_tokens_decoder": {}}"#;
        assert_eq!(last(files(modern, Some(map))), eos);
        assert!(ClipTokenizer::from_files(&files(legacy, Some("[1, 2]"))).is_err(), "a malformed map is an error");
    }

    #[test]
    fn trains_a_small_clip_vocabulary() {
        let corpus: Vec<String> = [
            "Chest x-ray with no significant findings",
            "Chest X-ray of a subject with pleural effusion",
            "a dermoscopic image with melanoma (MEL) showing hair and ruler",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let json = train_clip_bpe(&corpus, 400).unwrap();
        let tok = ClipTokenizer::from_files(&TokenizerFiles {
            tokenizer_json: Some(json.into_bytes()),
            ..Default::default()
        })
        .unwrap();
        assert!(tok.vocab_size() <= 400 && tok.vocab_size() > 256, "{}", tok.vocab_size());
        let ids = tok.encode("Chest X-ray of a subject with pleural effusion").unwrap();
        assert_eq!(ids.len(), 77);
        assert_eq!(ids[0], 0, "starts with <|startoftext|>");
        let end = ids.iter().position(|&i| i == 1).unwrap();
        // Words seen in the corpus become few tokens: far fewer than the caption's 46 characters.
        assert!(end <= 16, "{end} tokens for a corpus caption");
        assert!(ids[1..end].iter().all(|&i| i > 1));
        // Unseen words still tokenize into known pieces (no unknown-token fallback to <|endoftext|>).
        let other = tok.encode("zebra quokka").unwrap();
        let end = other.iter().position(|&i| i == 1).unwrap();
        assert!(end > 2 && other[1..end].iter().all(|&i| i > 1));
    }
}
