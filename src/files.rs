//! Writing results to disk: every file is written beside its target and renamed over it, so a crash
//! mid-write leaves the previous file (or none) rather than a truncated one, and a value that cannot be
//! serialized is an error, never an empty file.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))
}

/// Writes `bytes` to `path` atomically (a sibling `.partial` file renamed over it).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, bytes).map_err(Error::io(path))?;
    std::fs::rename(&partial, path).map_err(Error::io(path))
}

/// Pretty-printed JSON of `value`.
pub fn json_text(what: &str, value: &impl Serialize) -> Result<String> {
    serde_json::to_string_pretty(value).map_err(|e| Error::arg(format!("{what} cannot be written as JSON: {e}")))
}

/// Writes `value` as pretty-printed JSON to `path` atomically, creating its folder. Object keys come out
/// sorted at every level (the value passes through serde_json's ordered `Value`), so a report's bytes do not
/// depend on the order of a struct's fields.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir)?;
    }
    let what = path.display().to_string();
    let value =
        serde_json::to_value(value).map_err(|e| Error::arg(format!("{what} cannot be written as JSON: {e}")))?;
    write(path, json_text(&what, &value)?.as_bytes())
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(Error::io(path))
}

/// Reads a whole text file.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(Error::io(path))
}

/// Saves an image as PNG (by extension) atomically.
pub fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Image(format!("{}: {e}", path.display())))?;
    write(path, &png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_no_partial_file() {
        let dir = std::env::temp_dir().join(format!("traverse-files-{}", std::process::id()));
        let path = dir.join("a/b.json");
        write_json(&path, &serde_json::json!({"step": 3})).unwrap();
        write_json(&path, &serde_json::json!({"step": 4})).unwrap();
        assert_eq!(read_text(&path).unwrap(), "{\n  \"step\": 4\n}");
        let names: Vec<_> = std::fs::read_dir(dir.join("a")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["b.json"]);
        // A value serde cannot write (a map with non-string keys) is an error, not an empty file.
        let bad = std::collections::BTreeMap::from([((1, 2), 3)]);
        assert!(write_json(&dir.join("c.json"), &bad).is_err());
        assert!(!dir.join("c.json").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
