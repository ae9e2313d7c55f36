//! The browser app: a Leptos page (built with Trunk, see `web/` and `Trunk.toml`) that runs the prompt-swap
//! sampler on the visitor's GPU through WebGPU and shows trajectories, a Bézier traversal and metric
//! readouts, or times a model ([`bench`](mod@bench), `?bench=1`). What a link says and how the form edits it
//! ([`params`]), the built-in examples ([`examples`]), the readouts ([`readout`]), the swap's timeline
//! ([`timeline`]), the images of a run as they form ([`live`]), the newest-run slot ([`slot`]) and when a
//! cached download may stand for a file ([`download`]) are plain Rust, tested natively; the downloads
//! (`fetch`), the GPU side (`engine`) and the page (`view`) are built for wasm32 with the `web` feature.

pub mod bench;
pub mod download;
pub mod examples;
#[cfg(all(feature = "web", target_arch = "wasm32"))]
pub mod fetch;
pub mod live;
pub mod params;
pub mod readout;
pub mod slot;
pub mod timeline;

#[cfg(all(feature = "web", target_arch = "wasm32"))]
pub mod engine;
#[cfg(all(feature = "web", target_arch = "wasm32"))]
mod view;

/// Entry point of the wasm module: reports panics on the page (a lost GPU device surfaces as one) and
/// mounts the app.
#[cfg(all(feature = "web", target_arch = "wasm32"))]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let message = format!(
            "The page stopped: {info}. This usually means the GPU device was lost or ran out of memory. \
             Reload to start again; the link keeps your settings."
        );
        web_sys::console::error_1(&message.clone().into());
        if let Some(el) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("fatal")) {
            el.set_text_content(Some(&message));
            let _ = el.set_attribute("data-state", "failed");
        }
    }));
    leptos::mount::mount_to_body(view::Root);
}
