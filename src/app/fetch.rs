//! The page's downloads. Every file goes through the browser's Cache API: on a later visit a HEAD request
//! checks that the cached copy is the version the server has now ([`Version::matches`]), so only headers
//! cross the network. Bodies are read as a stream, so the status line shows each file's progress, a file over
//! its limit is refused as it arrives, and a weights file goes to the GPU piece by piece ([`fetch_into`])
//! instead of being held whole.

use gloo_net::http::{Method, RequestBuilder};
use js_sys::{Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{Cache, ReadableStreamDefaultReader, Response};

use crate::app::download::Version;
use crate::error::{Error, Result};

/// The Cache API store of every file the page fetches.
const CACHE: &str = "traverse-files-v1";

/// A JavaScript failure as text.
pub fn js_text(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| format!("{e:?}"))
}

async fn promise<T: JsCast>(p: Promise) -> std::result::Result<T, String> {
    JsFuture::from(p).await.map_err(|e| js_text(&e))?.dyn_into::<T>().map_err(|v| format!("unexpected {v:?}"))
}

/// Fetches `url` (`Ok(None)` when the server says it does not exist: a 404, or an HTML page in its place,
/// which is how single-page-app servers and many static hosts answer for a missing file; no model file is
/// HTML), refusing more than `limit` bytes. `progress(loaded, total, cached)` sees each arriving chunk.
pub async fn fetch(url: &str, limit: u64, progress: &mut dyn FnMut(u64, Option<u64>, bool)) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut gather = |chunk: &[u8], total: Option<u64>| {
        if out.is_empty() {
            out.reserve(total.unwrap_or(0) as usize);
        }
        out.extend_from_slice(chunk);
        Ok(())
    };
    Ok(fetch_into(url, limit, progress, &mut gather).await?.then_some(out))
}

/// Where a body goes, chunk by chunk, with the body's length where the server tells it; an error ends the
/// download.
pub type Sink<'a> = dyn FnMut(&[u8], Option<u64>) -> Result<()> + 'a;

/// [`fetch`], handing the body to `sink` chunk by chunk (with the body's length where the server tells it)
/// instead of gathering it; `Ok(false)` when the file does not exist. An error from `sink` ends the download.
pub async fn fetch_into(
    url: &str,
    limit: u64,
    progress: &mut dyn FnMut(u64, Option<u64>, bool),
    sink: &mut Sink<'_>,
) -> Result<bool> {
    let fail = |message: String| Error::Fetch { url: url.to_string(), message };
    let window = web_sys::window().ok_or_else(|| fail("no window".into()))?;
    // No Cache API (an insecure origin, a private window that refuses storage): plain downloads.
    let cache = match window.caches() {
        Ok(storage) => promise::<Cache>(storage.open(CACHE)).await.ok(),
        Err(_) => None,
    };
    if let Some(cache) = &cache {
        // A server that refuses HEAD, or tells no version, is simply downloaded from.
        if let Ok(head) = request(url, Method::HEAD).await {
            if missing(&head) {
                let _ = JsFuture::from(cache.delete_with_str(url)).await;
                return Ok(false);
            }
            let current = version(&head);
            if head.ok() && current.is_known() {
                let cached =
                    JsFuture::from(cache.match_with_str(url)).await.ok().and_then(|r| r.dyn_into::<Response>().ok());
                if let Some(cached) = cached.filter(|c| version(c).matches(&current)) {
                    return read(cached, limit, true, progress, sink).await.map(|()| true).map_err(|e| e.or(fail));
                }
            }
        }
    }
    let response = request(url, Method::GET).await.map_err(|e| fail(format!("network: {e}")))?;
    if missing(&response) {
        return Ok(false);
    }
    if !response.ok() {
        return Err(fail(format!("HTTP {} {}", response.status(), response.status_text())));
    }
    if let Some(cache) = cache.filter(|_| version(&response).is_known()) {
        // The cache reads its own copy of the body while this one is read below.
        if let Ok(copy) = response.clone() {
            let (cache, url) = (cache.clone(), url.to_string());
            spawn_local(async move {
                let _ = JsFuture::from(cache.put_with_str(&url, &copy)).await;
            });
        }
    }
    read(response, limit, false, progress, sink).await.map(|()| true).map_err(|e| e.or(fail))
}

async fn request(url: &str, method: Method) -> std::result::Result<Response, String> {
    RequestBuilder::new(url).method(method).send().await.map(Response::from).map_err(|e| e.to_string())
}

fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).ok().flatten()
}

fn missing(response: &Response) -> bool {
    let html = header(response, "content-type").is_some_and(|t| t.starts_with("text/html"));
    response.status() == 404 || (response.ok() && html)
}

fn version(response: &Response) -> Version {
    Version {
        etag: header(response, "etag"),
        last_modified: header(response, "last-modified"),
        length: header(response, "content-length").and_then(|v| v.parse().ok()),
    }
}

/// Why reading a body stopped: the download failed (a message for [`Error::Fetch`]), or its sink refused it.
enum Stop {
    Download(String),
    Sink(Error),
}

impl Stop {
    fn or(self, fail: impl Fn(String) -> Error) -> Error {
        match self {
            Stop::Download(message) => fail(message),
            Stop::Sink(e) => e,
        }
    }
}

/// The body of `response`, chunk by chunk into `sink`, at most `limit` bytes.
async fn read(
    response: Response,
    limit: u64,
    cached: bool,
    progress: &mut dyn FnMut(u64, Option<u64>, bool),
    sink: &mut Sink<'_>,
) -> std::result::Result<(), Stop> {
    let total = version(&response).length;
    if let Some(n) = total.filter(|&n| n > limit) {
        return Err(Stop::Download(format!("{n} bytes, over the {limit}-byte limit")));
    }
    let Some(body) = response.body() else { return Ok(()) };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut loaded = 0u64;
    let mut buffer = Vec::new();
    loop {
        let chunk =
            JsFuture::from(reader.read()).await.map_err(|e| Stop::Download(format!("body: {}", js_text(&e))))?;
        if Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            return Ok(());
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())
            .ok()
            .and_then(|v| v.dyn_into().ok())
            .ok_or_else(|| Stop::Download("body: a chunk that is not bytes".to_string()))?;
        loaded += value.length() as u64;
        if loaded > limit {
            let _ = reader.cancel();
            return Err(Stop::Download(format!("over the {limit}-byte limit")));
        }
        buffer.resize(value.length() as usize, 0);
        value.copy_to(&mut buffer);
        if let Err(e) = sink(&buffer, total) {
            let _ = reader.cancel();
            return Err(Stop::Sink(e));
        }
        progress(loaded, total, cached);
    }
}
