//! The page: small Leptos components over a few signals. Data flows as in the library: the form (a
//! [`Traversal`], mirrored in the URL) → a run on the GPU → pictures and readouts → the view.

use std::cell::RefCell;
use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::app::bench::BenchSettings;
use crate::app::engine::{self, Gpu, Models, Outcome, Picture, Run};
use crate::app::examples::{self, Example};
use crate::app::params::{MAX_STEPS, Traversal};
use crate::app::readout::MapDot;
use crate::app::slot::Latest;
use crate::classifier::Classifier;
use crate::pipeline::StableDiffusion;
use crate::swap::GUIDANCE_RANGE;
use crate::synthetic::Kind;

/// What the page is doing.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Starting WebGPU or fetching the model; the text says which.
    Loading(String),
    /// Ready for a run.
    Ready,
    /// Denoising: steps done, steps in all.
    Running(usize, usize),
    /// Decoding and classifying the images.
    Decoding,
    /// Something failed; the page keeps what it had.
    Failed(String),
}

/// The loaded models, immutable once loaded.
struct Engine {
    gpu: Gpu,
    sd: StableDiffusion,
    model: String,
    chest: Option<Classifier>,
    derm: Option<Classifier>,
}

impl Engine {
    fn models(&self, kind: Kind) -> Models<'_> {
        let classifier = match kind {
            Kind::Chest => self.chest.as_ref(),
            Kind::Derm => self.derm.as_ref(),
        };
        Models { sd: &self.sd, classifier, max_binding: self.gpu.max_binding }
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

async fn start(model: String, phase: RwSignal<Phase>) -> Result<Engine, String> {
    let gpu = engine::webgpu().await.map_err(|e| e.to_string())?;
    let status = |text: String| phase.set(Phase::Loading(text));
    let sd = engine::load_model(&model, &gpu, status).await.map_err(|e| e.to_string())?;
    let chest = engine::load_classifier("classifiers/chest", &gpu.device, status).await.map_err(|e| e.to_string())?;
    let derm = engine::load_classifier("classifiers/derm", &gpu.device, status).await.map_err(|e| e.to_string())?;
    Ok(Engine { gpu, sd, model, chest, derm })
}

/// The page a link asks for: the benchmark for `?bench=1`, otherwise the app.
#[component]
pub fn Root() -> impl IntoView {
    match BenchSettings::from_query(&location_query()) {
        Ok(Some(settings)) => view! { <BenchPage settings /> }.into_any(),
        Ok(None) => view! { <App /> }.into_any(),
        Err(e) => {
            let phase = RwSignal::new(Phase::Failed(e.to_string()));
            view! { <StatusLine phase adapter=RwSignal::new(String::new()) /> }.into_any()
        }
    }
}

/// The benchmark (`?bench=1`): one model's U-Net calls and decode timed on this GPU, as a table to paste.
#[component]
fn BenchPage(settings: BenchSettings) -> impl IntoView {
    let phase = RwSignal::new(Phase::Loading("Starting WebGPU …".into()));
    let adapter = RwSignal::new(String::new());
    let report = RwSignal::new(String::new());
    spawn_local(async move {
        let status = |text: String| phase.set(Phase::Loading(text));
        let result = match engine::webgpu().await {
            Ok(gpu) => {
                adapter.set(gpu.adapter.clone());
                engine::bench(&gpu, &settings, status).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(r) => {
                report.set(r.markdown());
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
        <StatusLine phase adapter />
        <pre id="bench">{move || report.get()}</pre>
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
                let Some((ticket, mut r)) = cell.borrow_mut().lend() else { break };
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

    let go = move || {
        let Some(e) = engine.get_value() else { return };
        let t = form.get_untracked();
        set_location_query(&t);
        phase.set(Phase::Running(0, t.steps));
        let ticket = run.get_value().borrow_mut().begin();
        spawn_local(async move {
            let models = e.models(t.kind);
            let result = engine::run(&models, &t, |done, all| {
                phase.set(if done < all { Phase::Running(done, all) } else { Phase::Decoding })
            })
            .await;
            match result {
                Ok(r) => {
                    let outcome = r.outcome.clone();
                    // Only the newest run is shown; a newer one has its own task under way.
                    if run.get_value().borrow_mut().finish(ticket, r) {
                        shown.set(Some(outcome));
                        phase.set(Phase::Ready);
                        show_frame(t.shown, t.frame);
                    }
                }
                Err(err) => phase.set(Phase::Failed(err.to_string())),
            }
        });
    };

    spawn_local(async move {
        let model = initial.model.clone();
        phase.set(Phase::Loading("Starting WebGPU …".into()));
        match start(model, phase).await {
            Ok(e) => {
                adapter.set(format!(
                    "{} · model {}/ ({}×{} px, {:.1} MB of weights on the GPU)",
                    e.gpu.adapter,
                    e.model,
                    e.sd.default_image_size(),
                    e.sd.default_image_size(),
                    e.sd.device_bytes() as f64 / 1e6
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
        <StatusLine phase adapter />
        <Controls form phase go />
        <Results shown frame form show_frame />
        <footer>
            <a href="model/MODEL_CARD.md">"Model card"</a>
            " · the method: Language-guided traversals of Stable Diffusion latent space for medical images"
        </footer>
    }
}

#[component]
fn StatusLine(phase: RwSignal<Phase>, adapter: RwSignal<String>) -> impl IntoView {
    let text = move || match phase.get() {
        Phase::Loading(s) => s,
        Phase::Ready => "Ready.".into(),
        Phase::Running(done, all) => format!("Denoising: step {done} of {all}"),
        Phase::Decoding => "Decoding and classifying the images…".into(),
        Phase::Failed(e) => e,
    };
    let state = move || match phase.get() {
        Phase::Loading(_) => "loading",
        Phase::Ready => "ready",
        Phase::Running(..) | Phase::Decoding => "running",
        Phase::Failed(_) => "failed",
    };
    view! {
        <section id="status" data-state=state class=state>
            <span>{text}</span>
            <span class="adapter">{move || adapter.get()}</span>
        </section>
    }
}

#[component]
fn Controls(
    form: RwSignal<Traversal>,
    phase: RwSignal<Phase>,
    go: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let all = examples::all();
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
            <label>
                "Seed "
                <input id="seed" type="number" min="0" prop:value=move || form.with(|f| f.seed.to_string())
                    on:change=move |ev| form.update(|f| f.edit_seed(&event_target_value(&ev))) />
            </label>
            <button id="reseed" on:click=move |_| form.update(Traversal::next_subject)>"Next subject"</button>
            <label class="wide">
                "Neutral prompt "
                <input id="neutral" type="text" prop:value=move || form.with(|f| f.neutral.clone())
                    on:change=move |ev| form.update(|f| f.edit_neutral(&event_target_value(&ev))) />
            </label>
            <label class="wide">
                "Style prompts (one per line) "
                <textarea id="styles" rows="4" prop:value=move || form.with(|f| f.styles.join("\n"))
                    on:change=move |ev| form.update(|f| f.edit_styles(&event_target_value(&ev))) />
            </label>
            <label>
                "Steps "
                <input id="steps" type="number" min="1" max=MAX_STEPS.to_string() prop:value=move || form.with(|f| f.steps.to_string())
                    on:change=move |ev| form.update(|f| f.edit_steps(&event_target_value(&ev))) />
            </label>
            <label>
                "Guidance "
                <input id="guidance" type="number" min=GUIDANCE_RANGE.start().to_string()
                    max=GUIDANCE_RANGE.end().to_string() step="0.5"
                    prop:value=move || form.with(|f| f.guidance.to_string())
                    on:change=move |ev| form.update(|f| f.edit_guidance(&event_target_value(&ev))) />
            </label>
            <button id="run" disabled=busy on:click=move |_| go()>"Traverse"</button>
            <a id="share" href=move || form.with(|f| format!("?{}", f.to_query()))>"Link to these settings"</a>
        </section>
    }
}

fn percent(p: f64) -> String {
    format!("{:.0}%", 100.0 * p)
}

#[component]
fn Results(
    shown: RwSignal<Option<Outcome>>,
    frame: RwSignal<Option<Picture>>,
    form: RwSignal<Traversal>,
    show_frame: impl Fn(usize, usize) + Copy + Send + Sync + 'static,
) -> impl IntoView {
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
                        .map(|(caption, p, prob, flip)| {
                            let score = prob.map(|v| {
                                view! {
                                    <span class="prob" class:flip=flip.unwrap_or(false)>
                                        {percent(v)}{if flip == Some(true) { " ✓" } else { "" }}
                                    </span>
                                }
                            });
                            view! {
                                <figure>
                                    <img src=p.url alt=caption.clone() />
                                    <figcaption>{caption}" "{score}</figcaption>
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
                    {rows}
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
                        view! {
                            <figure class="frame">
                                <img id="frame-image" src=p.url alt="interpolated frame" />
                                <ul class="probs">{probs}</ul>
                            </figure>
                        }
                    })}
                </section>
            }
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
                <svg viewBox=format!("0 0 {size} {size}") width=size.to_string() height=size.to_string() role="img">
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
