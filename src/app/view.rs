//! The page: small Leptos components over a few signals. Data flows as in the library: the form (a
//! [`Traversal`], mirrored in the URL) → a run on the GPU → pictures and readouts → the view.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::app::bench::BenchSettings;
use crate::app::engine::{self, Gpu, Models, Outcome, Picture, Progress, Run};
use crate::app::examples::{self, Example};
use crate::app::live::Live;
use crate::app::params::{FieldCheck, MAX_SAMPLES, MAX_SIZE, MAX_STEPS, MIN_SIZE, Traversal};
use crate::app::readout::MapDot;
use crate::app::slot::{Latest, Ticket, Unavailable};
use crate::app::timeline::Timeline;
use crate::classifier::Classifier;
use crate::lpips::Lpips;
use crate::pipeline::StableDiffusion;
use crate::preview::LatentPreview;
use crate::swap::GUIDANCE_RANGE;
use crate::synthetic::Kind;
use crate::weights::Precision;

/// What the page is doing.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Starting WebGPU or fetching the model; the text says which.
    Loading(String),
    /// Ready for a run.
    Ready,
    /// A run is under way; [`Live`] says where.
    Running,
    /// Something failed; the page keeps what it had.
    Failed(String),
}

/// The loaded models, immutable once loaded.
struct Engine {
    gpu: Gpu,
    /// Seconds the model and classifiers took to load.
    load_s: f64,
    sd: StableDiffusion,
    preview: LatentPreview,
    model: String,
    chest: Option<Classifier>,
    derm: Option<Classifier>,
    lpips: Option<Lpips>,
}

impl Engine {
    fn models(&self, kind: Kind) -> Models<'_> {
        let classifier = match kind {
            Kind::Chest => self.chest.as_ref(),
            Kind::Derm => self.derm.as_ref(),
        };
        Models {
            sd: &self.sd,
            classifier,
            lpips: self.lpips.as_ref(),
            max_binding: self.gpu.max_binding,
            preview: &self.preview,
        }
    }
}

fn location_query() -> String {
    web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default()
}

fn set_location_query(t: &Traversal) {
    if let Some(h) = web_sys::window().and_then(|w| w.history().ok()) {
        let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&format!("?{}", t.to_query())));
    }
}

/// Borrows the newest finished run, waiting a frame at a time while other work (a frame decode, a download)
/// has it; `None` when no run has finished.
async fn borrow_run(cell: &RefCell<Latest<Run>>) -> Option<(Ticket, Run)> {
    loop {
        match cell.borrow_mut().lend() {
            Ok(lent) => return Some(lent),
            Err(Unavailable::Empty) => return None,
            Err(Unavailable::Lent(_)) => {}
        }
        engine::next_frame().await;
    }
}

async fn start(model: String, precision: Precision, phase: RwSignal<Phase>) -> Result<Engine, String> {
    let t0 = js_sys::Date::now();
    let gpu = engine::webgpu(precision).await.map_err(|e| e.to_string())?;
    let status = |text: String| phase.set(Phase::Loading(text));
    let sd = engine::load_model(&model, &gpu, status).await.map_err(|e| e.to_string())?;
    let preview = engine::load_preview(&model, sd.unet_config.in_channels, status).await.map_err(|e| e.to_string())?;
    let chest = engine::load_classifier("classifiers/chest", &gpu.device, status).await.map_err(|e| e.to_string())?;
    let derm = engine::load_classifier("classifiers/derm", &gpu.device, status).await.map_err(|e| e.to_string())?;
    let lpips = engine::load_lpips("lpips/alex.safetensors", &gpu.device, status).await.map_err(|e| e.to_string())?;
    Ok(Engine { gpu, load_s: (js_sys::Date::now() - t0) / 1000.0, sd, preview, model, chest, derm, lpips })
}

/// The page a link asks for: the benchmark for `?bench=1`, otherwise the app.
#[component]
pub fn Root() -> impl IntoView {
    match BenchSettings::from_query(&location_query()) {
        Ok(Some(settings)) => view! { <BenchPage settings /> }.into_any(),
        Ok(None) => view! { <App /> }.into_any(),
        Err(e) => {
            let phase = RwSignal::new(Phase::Failed(e.to_string()));
            view! { <StatusLine phase adapter=RwSignal::new(String::new()) live=RwSignal::new(None) /> }.into_any()
        }
    }
}

/// The benchmark (`?bench=1`): one model's U-Net calls and decode timed on this GPU, as a table to paste.
#[component]
fn BenchPage(settings: BenchSettings) -> impl IntoView {
    let phase = RwSignal::new(Phase::Loading("Starting WebGPU …".into()));
    let adapter = RwSignal::new(String::new());
    let report = RwSignal::new(String::new());
    let output = RwSignal::new(String::new());
    spawn_local(async move {
        let status = |text: String| phase.set(Phase::Loading(text));
        let result = match engine::webgpu(settings.precision).await {
            Ok(gpu) => {
                adapter.set(gpu.adapter.clone());
                engine::bench(&gpu, &settings, status).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(r) => {
                report.set(r.markdown());
                output.set(serde_json::to_string(&r.output).unwrap_or_default());
                phase.set(Phase::Ready);
            }
            Err(e) => phase.set(Phase::Failed(e.to_string())),
        }
    });
    view! {
        <header>
            <h1>"Traverse benchmark"</h1>
            <p class="tagline">"One model's guided U-Net calls and a decode, timed on this GPU."</p>
        </header>
        <StatusLine phase adapter live=RwSignal::new(None) />
        <pre id="bench">{move || report.get()}</pre>
        // The first prediction's values as JSON, for tests/web/bench.mjs to compare with the CPU's.
        <pre id="bench-output" hidden>{move || output.get()}</pre>
    }
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let (initial, notice) = match Traversal::from_query(&location_query()) {
        Ok((t, ignored)) if ignored.is_empty() => (t, None),
        Ok((t, ignored)) => (t, Some(format!("Ignored unknown link parameters: {}", ignored.join(", ")))),
        Err(e) => (Traversal::default(), Some(format!("{e}. Showing the default example instead."))),
    };
    let form = RwSignal::new(initial.clone());
    let phase = RwSignal::new(Phase::Loading("Starting WebGPU …".into()));
    let adapter = RwSignal::new(String::new());
    let shown = RwSignal::new(None::<Outcome>);
    let frame = RwSignal::new(None::<Picture>);
    let engine: StoredValue<Option<Rc<Engine>>, LocalStorage> = StoredValue::new_local(None);
    // The newest run: a stale run or frame decode finishing late cannot overwrite it.
    let run: StoredValue<Rc<RefCell<Latest<Run>>>, LocalStorage> = StoredValue::new_local(Rc::default());
    // The slider's latest wish and whether a decode is under way (the latest wins; none are queued).
    let wanted = StoredValue::new_local(None::<(usize, usize)>);
    let decoding = StoredValue::new_local(false);

    let show_frame = move |style: usize, at: usize| {
        wanted.set_value(Some((style, at)));
        if decoding.get_value() {
            return;
        }
        decoding.set_value(true);
        spawn_local(async move {
            while let Some((style, at)) = wanted.get_value() {
                wanted.set_value(None);
                let (Some(e), cell) = (engine.get_value(), run.get_value()) else { break };
                // The run is lent out while decoding, so no borrow is held across an await.
                let Some((ticket, mut r)) = borrow_run(&cell).await else { break };
                let kind = r.outcome.traversal.kind;
                let result = r.frame(&e.models(kind), style, at).await;
                // A run started meanwhile voids this one: its frame is not shown and it is not put back.
                if !cell.borrow_mut().finish(ticket, r) {
                    break;
                }
                match result {
                    Ok(p) => frame.set(Some(p)),
                    Err(err) => phase.set(Phase::Failed(err.to_string())),
                }
            }
            decoding.set_value(false);
        });
    };

    // The running traversal's images as they form, and how to stop it.
    let live = RwSignal::new(None::<Live>);
    let stop: StoredValue<Rc<Cell<bool>>, LocalStorage> = StoredValue::new_local(Rc::default());

    // A visitor's own image (name, bytes): the next runs start from its inversion instead of the seed.
    let upload = RwSignal::new(None::<(String, Arc<Vec<u8>>)>);

    let go = move || {
        let Some(e) = engine.get_value() else { return };
        let t = form.get_untracked();
        let image = upload.get_untracked();
        set_location_query(&t);
        // A new run stops the one before it.
        stop.get_value().set(true);
        let stopped = Rc::new(Cell::new(false));
        stop.set_value(stopped.clone());
        shown.set(None);
        frame.set(None);
        live.set(None);
        let ticket = run.get_value().borrow_mut().begin();
        spawn_local(async move {
            let models = e.models(t.kind);
            let inverted = match image {
                Some((name, bytes)) => {
                    phase.set(Phase::Loading(format!("Inverting {name} …")));
                    let status = |text: String| phase.set(Phase::Loading(text));
                    match engine::invert_image(&models, &t, &name, &bytes, &stopped, status).await {
                        Ok(Some(i)) => Some(i),
                        Ok(None) => return phase.set(Phase::Ready),
                        Err(err) => return phase.set(Phase::Failed(err.to_string())),
                    }
                }
                None => None,
            };
            phase.set(Phase::Running);
            live.set(Some(Live::new(t.steps, &t.swap_points, t.styles.len())));
            let start = js_sys::Date::now();
            let seconds = move || (js_sys::Date::now() - start) / 1000.0;
            let result = engine::run(&models, &t, inverted.as_ref(), &stopped, |p| {
                live.update(|l| {
                    if let Some(l) = l {
                        match p {
                            Progress::Step(done) => l.step(done, seconds()),
                            Progress::Preview(lane, url) => l.preview(lane, url),
                            Progress::Image(lane, picture) => l.decoded_image(lane, picture.url, seconds()),
                        }
                    }
                })
            })
            .await;
            match result {
                Ok(Some(r)) => {
                    let outcome = r.outcome.clone();
                    // Only the newest run is shown; a newer one has its own task under way.
                    if run.get_value().borrow_mut().finish(ticket, r) {
                        shown.set(Some(outcome));
                        live.set(None);
                        phase.set(Phase::Ready);
                        show_frame(t.shown, t.frame);
                    }
                }
                // Stopped: what formed so far stays on the page (unless a newer run replaced it).
                Ok(None) => {
                    if Rc::ptr_eq(&stop.get_value(), &stopped) {
                        live.update(|l| {
                            if let Some(l) = l {
                                l.stopped = true;
                            }
                        });
                        phase.set(Phase::Ready);
                    }
                }
                Err(err) => phase.set(Phase::Failed(err.to_string())),
            }
        });
    };
    let halt = move || stop.get_value().set(true);

    // The shown run as a zip in the CLI's layout, with the page's figures.
    let saving = RwSignal::new(None::<String>);
    let download = move || {
        let (Some(e), cell) = (engine.get_value(), run.get_value()) else { return };
        saving.set(Some("Preparing the download …".into()));
        spawn_local(async move {
            let Some((ticket, r)) = borrow_run(&cell).await else {
                saving.set(Some("There is no finished run to download.".into()));
                return;
            };
            let t = &r.outcome.traversal;
            let result = r.archive(&e.models(t.kind), e.load_s, page_figures()).await;
            let name = format!("traverse-{}-seed{}.zip", t.example.as_deref().unwrap_or("custom"), t.seed);
            cell.borrow_mut().finish(ticket, r);
            saving.set(Some(
                match result.and_then(|zip| engine::save_file(&name, "application/zip", &zip).map(|()| zip.len())) {
                    Ok(n) => format!("Saved {name} ({:.1} MB).", n as f64 / 1e6),
                    Err(err) => format!("The download failed: {err}"),
                },
            ));
        });
    };

    spawn_local(async move {
        let model = initial.model.clone();
        phase.set(Phase::Loading("Starting WebGPU …".into()));
        match start(model, initial.precision, phase).await {
            Ok(e) => {
                let note = e.gpu.precision_note.as_ref().map_or(String::new(), |n| format!(" · {n}"));
                adapter.set(format!(
                    "{} · model {}/ ({}×{} px, {:.1} MB of weights on the GPU, {}){note}",
                    e.gpu.adapter,
                    e.model,
                    e.sd.default_image_size(),
                    e.sd.default_image_size(),
                    e.sd.device_bytes() as f64 / 1e6,
                    e.gpu.precision
                ));
                engine.set_value(Some(Rc::new(e)));
                phase.set(Phase::Ready);
                go();
            }
            Err(err) => phase.set(Phase::Failed(err)),
        }
    });

    view! {
        <header>
            <h1>"Traverse"</h1>
            <p class="tagline">
                "Language-guided traversals of Stable Diffusion's latent space: one noise, a neutral prompt, "
                "and a swap to an attribute prompt for the last " <i>"t"</i> " of the DDIM steps."
            </p>
            <p class="warning">
                "The embedded model was trained on synthetic phantoms, not patients. Not for clinical use."
            </p>
        </header>
        {notice.map(|n| view! { <p class="notice" id="notice">{n}</p> })}
        <StatusLine phase adapter live />
        <Controls form phase go halt upload />
        <LiveRun live form />
        <Results shown frame form show_frame download saving />
        <footer>
            <a href="model/MODEL_CARD.md">"Model card"</a>
            " · the method: Language-guided traversals of Stable Diffusion latent space for medical images"
        </footer>
    }
}

/// Largest image file the page reads.
const MAX_UPLOAD_FILE_BYTES: f64 = 50e6;

/// The page's figures as standalone SVG files: the shown run's timeline and its t-SNE map.
fn page_figures() -> Vec<(String, Vec<u8>)> {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return Vec::new() };
    [("timeline.svg", "#trajectories #timeline"), ("latent-map.svg", "#trajectories .latent-map svg")]
        .into_iter()
        .filter_map(|(name, selector)| {
            let svg = document.query_selector(selector).ok().flatten()?.outer_html();
            Some((name.to_string(), format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{svg}\n").into_bytes()))
        })
        .collect()
}

#[component]
fn StatusLine(phase: RwSignal<Phase>, adapter: RwSignal<String>, live: RwSignal<Option<Live>>) -> impl IntoView {
    let text = move || match phase.get() {
        Phase::Loading(s) => s,
        Phase::Ready => live.with(|l| l.as_ref().filter(|l| l.stopped).map(Live::status)).unwrap_or("Ready.".into()),
        Phase::Running => live.with(|l| l.as_ref().map(Live::status)).unwrap_or_default(),
        Phase::Failed(e) => e,
    };
    let state = move || match phase.get() {
        Phase::Loading(_) => "loading",
        Phase::Ready => "ready",
        Phase::Running => "running",
        Phase::Failed(_) => "failed",
    };
    let bar = move || {
        (phase.get() == Phase::Running).then(|| {
            let value = live.with(|l| l.as_ref().map_or(0.0, Live::fraction));
            view! { <progress id="progress" max="1" value=format!("{value:.3}")></progress> }
        })
    };
    view! {
        <section id="status" data-state=state class=state>
            <span>{text}{bar}</span>
            <span class="adapter">{move || adapter.get()}</span>
        </section>
    }
}

/// One form field: what is typed is checked at each keystroke (the reason shows beside the field) and applied
/// when the field is left or Enter pressed; a bad value never reaches the traversal.
#[component]
fn Field(
    form: RwSignal<Traversal>,
    label: &'static str,
    id: &'static str,
    value: fn(&Traversal) -> String,
    edit: fn(&mut Traversal, &str) -> FieldCheck,
    #[prop(optional)] wide: bool,
    #[prop(optional)] lines: Option<u32>,
    #[prop(optional)] placeholder: &'static str,
    #[prop(optional, into)] hint: String,
) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let check = move |text: String| {
        let mut f = form.get_untracked();
        error.set(edit(&mut f, &text).err());
    };
    let apply = move |text: String| {
        let mut f = form.get_untracked();
        match edit(&mut f, &text) {
            Ok(()) => {
                form.set(f);
                error.set(None);
            }
            Err(e) => error.set(Some(e)),
        }
    };
    let shown = move || form.with(value);
    let input = match lines {
        Some(rows) => view! {
            <textarea id=id rows=rows placeholder=placeholder prop:value=shown
                aria-invalid=move || error.with(Option::is_some).to_string()
                on:input=move |ev| check(event_target_value(&ev))
                on:change=move |ev| apply(event_target_value(&ev)) />
        }
        .into_any(),
        None => view! {
            <input id=id type="text" placeholder=placeholder prop:value=shown
                aria-invalid=move || error.with(Option::is_some).to_string()
                on:input=move |ev| check(event_target_value(&ev))
                on:change=move |ev| apply(event_target_value(&ev)) />
        }
        .into_any(),
    };
    view! {
        <label class:wide=wide>
            {label}
            {input}
            <span class="hint">{hint}</span>
            <span class="invalid" id=format!("{id}-error")>{move || error.get()}</span>
        </label>
    }
}

#[component]
fn Controls(
    form: RwSignal<Traversal>,
    phase: RwSignal<Phase>,
    go: impl Fn() + Copy + Send + Sync + 'static,
    halt: impl Fn() + Copy + Send + Sync + 'static,
    upload: RwSignal<Option<(String, Arc<Vec<u8>>)>>,
) -> impl IntoView {
    let all = examples::all();
    let upload_error = RwSignal::new(None::<String>);
    let choose = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
        if file.size() > MAX_UPLOAD_FILE_BYTES {
            upload_error.set(Some(format!("{} is over {} MB", file.name(), MAX_UPLOAD_FILE_BYTES / 1e6)));
            return;
        }
        spawn_local(async move {
            match wasm_bindgen_futures::JsFuture::from(file.array_buffer()).await {
                Ok(buffer) => {
                    upload.set(Some((file.name(), Arc::new(js_sys::Uint8Array::new(&buffer).to_vec()))));
                    upload_error.set(None);
                }
                Err(e) => upload_error.set(Some(format!("{}: {}", file.name(), crate::app::fetch::js_text(&e)))),
            }
        });
    };
    let busy = move || !matches!(phase.get(), Phase::Ready | Phase::Failed(_));
    let pick = move |id: String| form.update(|f| f.pick_example(&id));
    let blurb = move || {
        let id = form.with(|f| f.example.clone());
        examples::all()
            .into_iter()
            .find(|e| Some(e.id.to_string()) == id)
            .map(|e: Example| e.blurb)
            .unwrap_or("Your own prompts: the readouts score the classifier label each style names.")
    };
    view! {
        <section id="controls">
            <label>
                "Example "
                <select id="example" on:change=move |ev| pick(event_target_value(&ev))>
                    {all
                        .iter()
                        .map(|e| {
                            let id = e.id.to_string();
                            let selected = {
                                let id = id.clone();
                                move || form.with(|f| f.example.as_deref() == Some(id.as_str()))
                            };
                            view! { <option value=id.clone() selected=selected>{e.title}</option> }
                        })
                        .collect_view()}
                    <option value="" selected=move || form.with(|f| f.example.is_none()) disabled=true>
                        "Custom prompts"
                    </option>
                </select>
            </label>
            <p class="blurb">{blurb}</p>
            <Field form label="Seed " id="seed" value={|f| f.seed.to_string()} edit=Traversal::edit_seed />
            <button id="reseed" on:click=move |_| form.update(Traversal::next_subject)>"Next subject"</button>
            <Field form label="Neutral prompt " id="neutral" wide=true value={|f| f.neutral.clone()}
                edit=Traversal::edit_neutral />
            <Field form label="Style prompts (one per line) " id="styles" wide=true lines=4
                value={|f| f.styles.join("\n")} edit=Traversal::edit_styles />
            <Field form label="Or a prompt edit " id="edit" wide=true value={|_| String::new()}
                edit=Traversal::apply_prompt_edit
                placeholder="Chest X-ray [with no significant findings:of a subject with pleural effusion:0.6]"
                hint="AUTOMATIC1111's [from:to:when]: the prompt with `from` becomes the neutral prompt, the one \
                      with `to` the style, and the swap comes after step `when` (0.6: after 60% of the steps)." />
            <Field form label="Negative prompt " id="negative" wide=true value={|f| f.negative.clone()}
                edit=Traversal::edit_negative placeholder="(none, as Stable Diffusion)" />
            <Field form label="Steps " id="steps" value={|f| f.steps.to_string()} edit=Traversal::edit_steps
                hint=format!("1 to {MAX_STEPS}") />
            <Field form label="Guidance " id="guidance" value={|f| f.guidance.to_string()} edit=Traversal::edit_guidance
                hint=format!("{} to {}", GUIDANCE_RANGE.start(), GUIDANCE_RANGE.end()) />
            <Field form label="Swap points t " id="swap-points"
                value={|f| f.swap_points.iter().map(usize::to_string).collect::<Vec<_>>().join(",")}
                edit=Traversal::edit_swap_points hint="final steps with the style prompt, e.g. 5,10,15" />
            <Field form label="Bézier controls " id="controls-n" value={|f| f.controls.to_string()}
                edit=Traversal::edit_controls hint="2 up to 1 + swap points" />
            <Field form label="Bézier samples " id="samples" value={|f| f.samples.to_string()}
                edit=Traversal::edit_samples hint=format!("frames along each curve, 2 to {MAX_SAMPLES}") />
            <Field form label="Image size " id="size" value={|f| f.size.map(|s| s.to_string()).unwrap_or_default()}
                edit=Traversal::edit_size placeholder="(the model's own)"
                hint=format!("pixels per side, a multiple of 8 from {MIN_SIZE} to {MAX_SIZE}") />
            <label class="wide">
                "Or start from your own image (PNG or JPEG; it is inverted on your GPU and never leaves the browser) "
                <input id="upload" type="file" accept="image/png,image/jpeg" on:change=choose />
                <span class="invalid" id="upload-error">{move || upload_error.get()}</span>
            </label>
            {move || upload.with(|u| u.as_ref().map(|(name, bytes)| view! {
                <p class="blurb" id="uploaded">
                    {format!(
                        "Traverse starts from {name} ({:.0} kB): DDIM-inverted with the neutral prompt, as `traverse \
                         invert` does. A link cannot carry your image, so it shows the seed's run.",
                        bytes.len() as f64 / 1e3
                    )}
                    " "
                    <button id="forget" on:click=move |_| upload.set(None)>"Use the seed again"</button>
                </p>
            }))}
            <button id="run" disabled=busy on:click=move |_| go()>"Traverse"</button>
            <button id="stop" disabled=move || !busy() on:click=move |_| halt()>"Stop"</button>
            <a id="share" href=move || form.with(|f| format!("?{}", f.to_query()))>"Link to these settings"</a>
        </section>
    }
}

fn percent(p: f64) -> String {
    format!("{:.0}%", 100.0 * p)
}

/// The run under way (or stopped): every image as it forms, under the swap's timeline.
#[component]
fn LiveRun(live: RwSignal<Option<Live>>, form: RwSignal<Traversal>) -> impl IntoView {
    move || {
        live.with(|l| l.clone()).map(|l| {
            let (styles, points) = form.with_untracked(|f| (f.styles.clone(), l.swap_points.clone()));
            let done = Signal::derive(move || live.with(|l| l.as_ref().map(|l| l.done)));
            let cell = |caption: String, slot: &crate::app::live::Slot, state: &'static str| {
                view! {
                    <figure class=format!("live {state}") data-state=state>
                        {slot.url.clone().map(|u| view! { <img src=u alt=caption.clone() /> })}
                        <figcaption>{caption.clone()}</figcaption>
                    </figure>
                }
            };
            let state = |slot: &crate::app::live::Slot| match (slot.decoded, slot.branched) {
                (true, _) => "decoded",
                (false, true) => "branched",
                (false, false) => "shared",
            };
            let rows = l
                .swaps
                .iter()
                .enumerate()
                .map(|(k, row)| {
                    let neutral =
                        cell("neutral".into(), &l.neutral, if l.neutral.decoded { "decoded" } else { "branched" });
                    let cells = row
                        .iter()
                        .zip(&points)
                        .map(|(slot, t)| cell(format!("t = {t}"), slot, state(slot)))
                        .collect_view();
                    view! {
                        <div class="trajectory" data-style=k>
                            <h3>{styles.get(k).cloned().unwrap_or_default()}</h3>
                            <div class="strip">{neutral}{cells}</div>
                        </div>
                    }
                })
                .collect_view();
            view! {
                <section id="live">
                    <h2>"Forming"</h2>
                    <p class="meta">
                        "While it denoises, each image is previewed from the clean image the model predicts at \
                         that step (a cheap colour map of the latent, no VAE). A faded image still shares the \
                         neutral prompt's latent; it turns solid when its style prompt takes over; the VAE's real \
                         images replace the previews at the end."
                    </p>
                    <SwapTimeline steps=l.steps points=points.clone() styles=styles.len() done />
                    {rows}
                </section>
            }
        })
    }
}

/// The swap explained as a timeline of the DDIM steps: per swap point, the steps on the neutral prompt
/// (shared with the trunk) and those on the style prompt; `done` marks the step a run has reached.
#[component]
fn SwapTimeline(steps: usize, points: Vec<usize>, styles: usize, done: Signal<Option<usize>>) -> impl IntoView {
    let tl = Timeline::new(steps, &points, styles);
    let (left, width, row_h) = (70.0f64, 520.0f64, 16.0f64);
    let x = move |step: usize| left + width * step as f64 / steps.max(1) as f64;
    let trunk = view! {
        <g class="row trunk">
            <text x="0" y=format!("{:.1}", row_h * 0.75)>"neutral"</text>
            <rect class="neutral" fill="#b8c2d0" x=left y="2" width=width height=row_h - 4.0 />
        </g>
    };
    let rows = tl
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let y = row_h * (i + 1) as f64;
            view! {
                <g class="row" data-t=r.t data-swap-step=r.neutral_steps>
                    <title>{format!(
                        "t = {}: neutral prompt for steps 1–{}, shared with the trunk; the style prompt for the last {}",
                        r.t, r.neutral_steps, r.t
                    )}</title>
                    <text x="0" y=format!("{:.1}", y + row_h * 0.75)>{format!("t = {}", r.t)}</text>
                    <rect class="shared" fill="#b8c2d0" x=left y=format!("{:.1}", y + 2.0) width=format!("{:.1}", x(r.neutral_steps) - left)
                        height=row_h - 4.0 />
                    <rect class="style" fill="#d62728" x=format!("{:.1}", x(r.neutral_steps)) y=format!("{:.1}", y + 2.0)
                        width=format!("{:.1}", x(steps) - x(r.neutral_steps)) height=row_h - 4.0 />
                </g>
            }
        })
        .collect_view();
    let axis_y = row_h * (tl.rows.len() + 1) as f64 + 12.0;
    let marker = move || {
        done.get().map(|d| {
            view! { <line class="now" stroke="#000" x1=format!("{:.1}", x(d)) x2=format!("{:.1}", x(d)) y1="0" y2=format!("{:.1}", axis_y - 10.0) /> }
        })
    };
    let bill = format!(
        "{} guided U-Net evaluations with the shared neutral prefix, instead of {} for {} images run one by one \
         ({:.0}% fewer).",
        tl.shared,
        tl.separate,
        1 + styles * tl.rows.len(),
        100.0 * tl.saved()
    );
    view! {
        <figure class="timeline">
            <svg id="timeline" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="10" viewBox=format!("0 0 {:.0} {:.0}", left + width + 10.0, axis_y + 4.0) role="img">
                {trunk}
                {rows}
                <text class="axis" x=left y=format!("{axis_y:.1}")>"step 1"</text>
                <text class="axis end" x=left + width y=format!("{axis_y:.1}")>{format!("step {steps}")}</text>
                {marker}
            </svg>
            <figcaption>
                <span class="key shared">"neutral prompt, shared"</span>" "
                <span class="key style">"style prompt"</span>" · "{bill}
            </figcaption>
        </figure>
    }
}

/// The method in words, at two levels: what to look for in this example, and how it works.
#[component]
fn Explain(traversal: Traversal) -> impl IntoView {
    let example = traversal.example.as_deref().and_then(|id| examples::all().into_iter().find(|e| e.id == id));
    let walk = example.map(|e| {
        let steps = e.walkthrough.iter().map(|s| view! { <li>{*s}</li> }).collect_view();
        view! {
            <details class="explain" id="walkthrough" open>
                <summary>"What to look for"</summary>
                <ol>{steps}</ol>
            </details>
        }
    });
    view! {
        {walk}
        <details class="explain" id="how">
            <summary>"How it works"</summary>
            <p>
                "A diffusion model makes an image by removing noise in steps (here " {traversal.steps}
                " DDIM steps), each guided by a text prompt. Early steps decide the layout (the patient's \
                 anatomy), late steps the details. Every image above starts from the same noise (seed "
                {traversal.seed.to_string()} ")."
            </p>
            <p>
                "The neutral image uses the neutral prompt at every step. The image at swap point " <i>"t"</i>
                " uses the neutral prompt first and the style prompt for the last " <i>"t"</i>
                " steps. A small " <i>"t"</i> " can only change details, so the subject stays the same and the \
                 attribute appears faintly; a larger " <i>"t"</i> " lets the attribute grow. Because all images \
                 share the neutral steps before their swap, those steps are computed once (the trunk) and each \
                 image branches off it: the timeline shows where."
            </p>
            <p>
                "The classifier readouts score each image for the attribute; CFRT counts how often it flips \
                 from the neutral image's verdict. LPIPS (AlexNet features, as in the paper's Table 2) says how far \
                 each image looks from the neutral one: small when the subject stayed the same. The Bézier traversal bends a smooth curve through the \
                 trajectory's latents and decodes the frames between them."
            </p>
        </details>
    }
}

#[component]
fn Results(
    shown: RwSignal<Option<Outcome>>,
    frame: RwSignal<Option<Picture>>,
    form: RwSignal<Traversal>,
    show_frame: impl Fn(usize, usize) + Copy + Send + Sync + 'static,
    download: impl Fn() + Copy + Send + Sync + 'static,
    saving: RwSignal<Option<String>>,
) -> impl IntoView {
    // The image looked at closely: (style, 0 for the neutral image or 1 + swap point index).
    let closer = RwSignal::new(None::<(usize, usize)>);
    move || {
        shown.get().map(|s| {
            let points = s.traversal.swap_points.clone();
            let samples = s.traversal.samples;
            let labels = s.labels.clone();
            let rows = s
                .swaps
                .iter()
                .zip(&s.readouts)
                .enumerate()
                .map(|(k, (row, r))| {
                    let cells = std::iter::once(("neutral".to_string(), s.neutral.clone(), None, None))
                        .chain(row.iter().enumerate().map(|(i, p)| {
                            (format!("t = {}", points[i]), p.clone(), r.probability.get(i + 1).copied(), r.flips.get(i).copied())
                        }))
                        .enumerate()
                        .map(|(i, (caption, p, prob, flip))| {
                            let score = prob.map(|v| {
                                view! {
                                    <span class="prob" class:flip=flip.unwrap_or(false)>
                                        {percent(v)}{if flip == Some(true) { " ✓" } else { "" }}
                                    </span>
                                }
                            });
                            let distance = p.lpips.map(|d| view! {
                                <span class="lpips" title="LPIPS from the neutral image">{format!("LPIPS {d:.3}")}</span>
                            });
                            view! {
                                <figure>
                                    <img class="zoomable" src=p.url alt=caption.clone() title="Look closer"
                                        on:click=move |_| closer.set(Some((k, i))) />
                                    <figcaption>{caption}" "{score}{distance}</figcaption>
                                </figure>
                            }
                        })
                        .collect_view();
                    let summary = match (&r.attribute, r.cfrt) {
                        (Some(a), Some(c)) => format!(
                            "{a}: CFRT {c:.2} along the trajectory ({} of {} swap images flip)",
                            r.flips.iter().filter(|f| **f).count(),
                            r.flips.len()
                        ),
                        _ => "no attribute classifier for this prompt".into(),
                    };
                    view! {
                        <div class="trajectory" data-style=k>
                            <h3>{r.prompt.clone()}</h3>
                            <div class="strip">{cells}</div>
                            <p class="summary">{summary}</p>
                            <Cosines matrix=r.cosines.clone() points=points.clone() />
                        </div>
                    }
                })
                .collect_view();
            let styles = s.traversal.styles.clone();
            view! {
                <section id="trajectories">
                    <h2>"Trajectories"</h2>
                    <p class="meta">
                        {format!(
                            "seed {} · {} steps · guidance {} · {} guided evaluations in {} U-Net calls · {:.1} s",
                            s.traversal.seed, s.traversal.steps, s.traversal.guidance, s.unet.0, s.unet.1, s.seconds
                        )}
                    </p>
                    <p class="keep">
                        <button id="download" on:click=move |_| download()>"Download this run (zip)"</button>
                        " PNGs, the contact sheet, latents.safetensors and manifest.json as `traverse generate` \
                         writes them (`traverse interpolate --latents` reads the latents), and the figures as SVG."
                        <span id="saved">{move || saving.get()}</span>
                    </p>
                    <SwapTimeline steps=s.traversal.steps points=points.clone() styles=s.traversal.styles.len()
                        done=Signal::derive(|| None) />
                    <Explain traversal=s.traversal.clone() />
                    <Closer shown closer />
                    {rows}
                    {s.source.clone().map(|(name, r)| view! {
                        <p class="meta" id="source">
                            {format!(
                                "From your image {name}: inverted and regenerated at {:.1} dB PSNR (the VAE alone: {:.1} dB; \
                                 latent RMS error {:.3}).",
                                r.image_psnr_db, r.vae_only_psnr_db, r.latent_rms_error
                            )}
                        </p>
                    })}
                    <LatentMap dots=s.map.clone() styles=s.traversal.styles.clone() />
                </section>
                <section id="traversal">
                    <h2>"Bézier traversal"</h2>
                    <label>
                        "Style "
                        <select id="shown" on:change=move |ev| {
                            if let Ok(k) = event_target_value(&ev).parse::<usize>() {
                                form.update(|f| f.show_style(k));
                                show_frame(form.with_untracked(|f| f.shown), form.with_untracked(|f| f.frame));
                            }
                        }>
                            {styles.iter().enumerate().map(|(k, p)| view! {
                                <option value=k.to_string() selected=move || form.with(|f| f.shown == k)>{p.clone()}</option>
                            }).collect_view()}
                        </select>
                    </label>
                    <input id="frame" type="range" min="0" max=(samples - 1).to_string()
                        prop:value=move || form.with(|f| f.frame.to_string())
                        on:input=move |ev| {
                            if let Ok(i) = event_target_value(&ev).parse::<usize>() {
                                form.update(|f| f.show_frame(i));
                                set_location_query(&form.get_untracked());
                                show_frame(form.with_untracked(|f| f.shown), form.with_untracked(|f| f.frame));
                            }
                        } />
                    <span class="frame-no">{move || form.with(|f| format!("frame {} of {samples}", f.frame + 1))}</span>
                    {move || frame.get().map(|p| {
                        let probs = labels.iter().zip(&p.probs).map(|(l, v)| view! {
                            <li>{l.replace('_', " ")}": "{percent(*v as f64)}</li>
                        }).collect_view();
                        let distance = p.lpips.map(|d| view! {
                            <li class="lpips">"LPIPS from the neutral image: "{format!("{d:.3}")}</li>
                        });
                        view! {
                            <figure class="frame">
                                <img id="frame-image" src=p.url alt="interpolated frame" />
                                <ul class="probs">{probs}{distance}</ul>
                            </figure>
                        }
                    })}
                </section>
            }
        })
    }
}

/// A closer look at one image: large, beside the neutral image, with a map of what the style changed and
/// every classifier's readout on both.
#[component]
fn Closer(shown: RwSignal<Option<Outcome>>, closer: RwSignal<Option<(usize, usize)>>) -> impl IntoView {
    move || {
        let (k, i) = closer.get()?;
        shown.with(|s| {
            let s = s.as_ref()?;
            let (neutral, points) = (&s.neutral, &s.traversal.swap_points);
            let (picture, caption) = match i {
                0 => (neutral, "the neutral image".to_string()),
                _ => (s.swaps.get(k)?.get(i - 1)?, format!("swap point t = {}", points.get(i - 1)?)),
            };
            let prompt = if i == 0 { s.traversal.neutral.clone() } else { s.traversal.styles.get(k)?.clone() };
            let (diff, mean) = match engine::difference_url(&picture.url, &neutral.url) {
                Ok((url, mean)) => (Some(url), format!("{:.1}% mean absolute change", 100.0 * mean)),
                Err(e) => (None, e.to_string()),
            };
            let rows = s
                .labels
                .iter()
                .enumerate()
                .map(|(j, l)| {
                    let cell = |p: &Picture| p.probs.get(j).map(|v| percent(*v as f64)).unwrap_or_default();
                    view! { <tr><th>{l.replace('_', " ")}</th><td>{cell(neutral)}</td><td>{cell(picture)}</td></tr> }
                })
                .collect_view();
            Some(view! {
                <section id="closer" class="closer">
                    <h3>{format!("{prompt} · {caption}")}</h3>
                    <button id="close-closer" on:click=move |_| closer.set(None)>"Close"</button>
                    <div class="closer-images">
                        <figure><img src=picture.url.clone() alt="this image" /><figcaption>"this image"</figcaption></figure>
                        <figure><img src=neutral.url.clone() alt="neutral" /><figcaption>"neutral"</figcaption></figure>
                        <figure>
                            {diff.map(|u| view! { <img id="difference" src=u alt="difference map" /> })}
                            <figcaption>
                                "what changed (×4): " {mean}
                                {picture.lpips.map(|d| format!("; LPIPS {d:.3} from the neutral image"))}
                            </figcaption>
                        </figure>
                    </div>
                    {(!s.labels.is_empty()).then(|| view! {
                        <table class="readout"><tr><th></th><th>"neutral"</th><th>"this image"</th></tr>{rows}</table>
                    })}
                </section>
            })
        })
    }
}

/// Style colours of the latent map (the neutral latent is black).
const STYLE_COLOURS: [&str; 6] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

/// The t-SNE map of this run's latents (Fig. 4 for one subject): each style's trajectory from the neutral
/// latent through its swap latents, dots growing with the swap point.
#[component]
fn LatentMap(dots: Vec<MapDot>, styles: Vec<String>) -> impl IntoView {
    (!dots.is_empty()).then(|| {
        let (size, pad) = (300.0f32, 12.0f32);
        let at = |d: &MapDot| (pad + d.x * (size - 2.0 * pad), pad + d.y * (size - 2.0 * pad));
        let colour = |d: &MapDot| d.style.map_or("#000", |a| STYLE_COLOURS[a % STYLE_COLOURS.len()]);
        let last = dots.iter().map(|d| d.swap_point).max().unwrap_or(1).max(1) as f32;
        let (x0, y0) = at(&dots[0]);
        let lines = (0..styles.len())
            .map(|a| {
                let path: String = dots
                    .iter()
                    .filter(|d| d.style == Some(a))
                    .map(at)
                    .fold(format!("{x0:.1},{y0:.1}"), |acc, (x, y)| format!("{acc} {x:.1},{y:.1}"));
                view! { <polyline points=path fill="none" stroke=STYLE_COLOURS[a % STYLE_COLOURS.len()] stroke-opacity="0.4" /> }
            })
            .collect_view();
        let circles = dots
            .iter()
            .map(|d| {
                let (x, y) = at(d);
                let r = if d.style.is_none() { 6.0 } else { 2.5 + 3.0 * d.swap_point as f32 / last };
                view! {
                    <circle cx=format!("{x:.1}") cy=format!("{y:.1}") r=format!("{r:.1}") fill=colour(d)>
                        <title>{match d.style {
                            Some(a) => format!("{} · t = {}", styles[a], d.swap_point),
                            None => "neutral".to_string(),
                        }}</title>
                    </circle>
                }
            })
            .collect_view();
        let legend = styles
            .iter()
            .enumerate()
            .map(|(a, p)| view! { <li style=format!("color: {}", STYLE_COLOURS[a % STYLE_COLOURS.len()])>{p.clone()}</li> })
            .collect_view();
        view! {
            <details class="latent-map" open>
                <summary>"t-SNE map of this run's latents (Fig. 4, one subject)"</summary>
                <svg xmlns="http://www.w3.org/2000/svg" viewBox=format!("0 0 {size} {size}") width=size.to_string() height=size.to_string() role="img">
                    {lines}
                    {circles}
                </svg>
                <ul class="legend"><li>"● neutral"</li>{legend}</ul>
                <p class="meta">"Each style's swap latents, larger for later swap points, joined from the neutral one."</p>
            </details>
        }
    })
}

/// The direction cosine matrix (Fig. 5) as a small heat map.
#[component]
fn Cosines(matrix: Vec<Vec<f64>>, points: Vec<usize>) -> impl IntoView {
    let head = points.iter().map(|p| view! { <th>{p.to_string()}</th> }).collect_view();
    let body = matrix
        .iter()
        .zip(&points)
        .map(|(row, p)| {
            let cells = row
                .iter()
                .map(|c| {
                    let shade = format!("background: hsl(210, 60%, {:.0}%)", 95.0 - 45.0 * c.clamp(0.0, 1.0));
                    view! { <td style=shade>{format!("{c:.2}")}</td> }
                })
                .collect_view();
            view! { <tr><th>{p.to_string()}</th>{cells}</tr> }
        })
        .collect_view();
    view! {
        <details class="cosines">
            <summary>"Cosine similarity of the trajectory's directions (Fig. 5)"</summary>
            <table><tr><th>"t"</th>{head}</tr>{body}</table>
        </details>
    }
}
