//! Results → a standalone HTML report (tables and SVG charts, no scripts, no external files)
//! and a CSV of per-example predictions. `trilemma report` writes them; the page shows the same
//! HTML.

pub mod charts;

use crate::data::Split;
use crate::experiment::{Estimate, Results, UnitResult};
use crate::Result;
use charts::BarSeries;
use std::fmt::Write;

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.1}", x * 100.0)
}

fn est(e: &Estimate) -> String {
    format!("{} <small>[{}, {}]</small>", pct(e.value), pct(e.ci95[0]), pct(e.ci95[1]))
}

/// A count in engineering units (1.23 M).
fn big(x: f64) -> String {
    match x.abs() {
        v if v >= 1e9 => format!("{:.2} G", x / 1e9),
        v if v >= 1e6 => format!("{:.2} M", x / 1e6),
        v if v >= 1e3 => format!("{:.1} k", x / 1e3),
        _ => format!("{x:.0}"),
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;max-width:1200px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #d8dce5}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d8dce5;padding:3px 8px;text-align:right}\
th{background:#f1f3f8}td.l,th.l{text-align:left}small{color:#5b6475}.warn{color:#a33}\
.chart svg{max-width:100%;height:auto}code{font-size:12px}mark{background:#ffe08a}";

fn title(r: &Results) -> &str {
    if r.spec.name.is_empty() {
        "Trilemma experiment"
    } else {
        &r.spec.name
    }
}

/// The whole report as a standalone HTML document.
pub fn html(r: &Results) -> Result<String> {
    let title = title(r);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>",
        t = esc(title)
    );
    h += &body(r)?;
    h += "</body></html>\n";
    Ok(h)
}

/// The report without the document around it (what the page inserts).
pub fn body(r: &Results) -> Result<String> {
    let mut h = String::new();
    let _ = write!(h, "<div class=\"trilemma-report\"><h1>{}</h1>", esc(title(r)));
    let st = &r.status;
    if !st.complete {
        let _ = write!(
            h,
            "<p class=\"warn\">{} {} of {} evaluations and {} of {} attacks finished; the numbers below cover those only.</p>",
            if st.cancelled { "Cancelled:" } else { "Incomplete:" },
            st.units_done,
            st.units_total,
            st.attacks_done,
            st.attacks_total
        );
    }
    if !st.skipped.is_empty() {
        let _ = write!(h, "<p><small>Not bundled, so not run: {}.</small></p>", esc(&st.skipped.join(", ")));
    }
    let p = &r.provenance;
    let _ = write!(
        h,
        "<p>Backend: <b>{}</b> ({}){} · asked for <code>{}</code> · seed {} · {} bootstrap resamples per interval · Trilemma {} ({}) · {} · {:.1} s</p>",
        esc(&p.backend.kind),
        esc(&p.backend.device),
        p.fallback.as_ref().map(|f| format!(" <span class=\"warn\">— {}</span>", esc(f))).unwrap_or_default(),
        format!("{:?}", p.backend_choice).to_lowercase(),
        p.seed,
        p.bootstrap_resamples,
        esc(&p.crate_version),
        esc(&p.git_commit),
        esc(&p.target),
        r.timing.seconds
    );
    h += &units_table(r);
    h += &charts_section(r)?;
    h += &advglue_section(r);
    h += &robustness_section(r);
    h += &compression_section(r);
    h += &repair_section(r);
    h += &attacks_section(r);
    h += &efficiency_table(r);
    h += &provenance_section(r);
    h += "</div>";
    Ok(h)
}

fn units_table(r: &Results) -> String {
    let mut h = String::from("<h2>Scores</h2><p>Percent, with seeded bootstrap 95% intervals.</p><table><tr><th class=\"l\">model</th><th class=\"l\">task</th><th class=\"l\">split</th><th>n</th><th>accuracy</th><th>F1 / MCC</th><th>GLUE score</th></tr>");
    for u in &r.units {
        let extra = u.metric("f1").or_else(|| u.metric("matthews")).map(est).unwrap_or_default();
        let score = u.metric("score").or_else(|| u.metric("matthews")).or_else(|| u.metric("accuracy")).map(|e| pct(e.value)).unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td class=\"l\">{} <small>{}</small></td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&u.model),
            esc(&u.architecture),
            u.task,
            u.split,
            u.n,
            u.metric("accuracy").map(est).unwrap_or_default(),
            extra,
            score
        );
    }
    h += "</table>";
    // Zero-shot readouts (a text template through the LM head) are named; a task head is the default.
    let mut prompts: Vec<String> = r.units.iter().filter(|u| u.readout.starts_with("prompt")).map(|u| format!("{} on {}: {}", u.model, u.task, u.readout)).collect();
    prompts.dedup();
    if !prompts.is_empty() {
        let _ = write!(h, "<p><small>Read zero-shot through the LM head: {}.</small></p>", esc(&prompts.join("; ")));
    }
    h
}

fn charts_section(r: &Results) -> Result<String> {
    let mut h = String::from("<h2>Charts</h2>");
    // Accuracy per (task, split), one bar per model.
    let mut cats: Vec<(crate::data::Task, Split)> = Vec::new();
    for u in &r.units {
        if !cats.contains(&(u.task, u.split)) {
            cats.push((u.task, u.split));
        }
    }
    let models = &r.spec.model_names();
    let series: Vec<BarSeries> = models
        .iter()
        .map(|m| BarSeries {
            name: m.clone(),
            values: cats
                .iter()
                .map(|&(t, s)| r.units.iter().find(|u| &u.model == m && u.task == t && u.split == s).and_then(|u| u.metric("accuracy")).map(|e| (e.value, e.ci95)))
                .collect(),
        })
        .collect();
    let names: Vec<String> = cats.iter().map(|(t, s)| format!("{t} {s}")).collect();
    if !cats.is_empty() {
        let _ = write!(h, "<div class=\"chart\">{}</div>", charts::grouped_bars("Accuracy (95% interval)", &names, &series, "accuracy")?);
    }
    // AdvGLUE accuracy per attack level (pooled over the tasks that ran), one bar per model.
    let levels = crate::data::AttackLevel::ALL;
    fn adv_units<'a>(r: &'a Results, m: &'a str) -> impl Iterator<Item = &'a UnitResult> {
        r.units.iter().filter(move |u| u.model == m && u.split == Split::AdvGlue)
    }
    if r.units.iter().any(|u| u.split == Split::AdvGlue) {
        let series: Vec<BarSeries> = models
            .iter()
            .map(|m| BarSeries {
                name: m.clone(),
                values: levels
                    .iter()
                    .map(|l| {
                        let summary = r.advglue.iter().find(|a| &a.model == m)?;
                        let cell = summary.levels.iter().find(|s| s.level == *l)?;
                        Some((cell.pooled_accuracy.value, cell.pooled_accuracy.ci95))
                    })
                    .collect(),
            })
            .collect();
        let names: Vec<String> = levels.iter().map(|l| format!("{} level", l.name())).collect();
        let _ = write!(h, "<div class=\"chart\">{}</div>", charts::grouped_bars("AdvGLUE accuracy by attack level (pooled)", &names, &series, "accuracy")?);
        // Efficiency vs robustness: multiply + add per example against AdvGLUE accuracy.
        let points: Vec<(String, f64, f64)> = models
            .iter()
            .filter_map(|m| {
                let us: Vec<&UnitResult> = adv_units(r, m).collect();
                let n: usize = us.iter().map(|u| u.n).sum();
                if n == 0 {
                    return None;
                }
                let correct: usize = us.iter().flat_map(|u| &u.predictions).filter(|p| p.prediction == p.label).count();
                let ops: f64 = us.iter().map(|u| (u.efficiency.ops_per_example.mul + u.efficiency.ops_per_example.add) * u.n as f64).sum::<f64>() / n as f64;
                Some((format!("{m} ({})", us[0].architecture), ops, correct as f64 / n as f64))
            })
            .collect();
        let _ = write!(
            h,
            "<div class=\"chart\">{}</div>",
            charts::scatter_log_x("Efficiency vs robustness", &points, "multiplications + additions per example (log)", "AdvGLUE accuracy")?
        );
    }
    Ok(h)
}

fn advglue_section(r: &Results) -> String {
    if r.advglue.is_empty() {
        return String::new();
    }
    let mut h = String::from("<h2>AdvGLUE</h2><table><tr><th class=\"l\">model</th><th>official score</th><th>sst2</th><th>qqp</th><th>mnli</th><th>qnli</th><th>rte</th>");
    for l in crate::data::AttackLevel::ALL {
        let _ = write!(h, "<th>{} (macro / pooled, n)</th>", l.name());
    }
    h += "</tr>";
    for a in &r.advglue {
        let _ = write!(h, "<tr><td class=\"l\">{}</td>", esc(&a.model));
        match &a.official_score {
            Some(s) => {
                let ci = a.official_ci95.map(|[lo, hi]| format!(" <small>[{}, {}]</small>", pct(lo), pct(hi))).unwrap_or_default();
                let _ = write!(h, "<td><b>{}</b>{ci}</td>", pct(s.score));
                for (_, v) in &s.task_scores {
                    let _ = write!(h, "<td>{}</td>", pct(*v));
                }
            }
            None => {
                let _ = write!(h, "<td colspan=\"6\" class=\"l\"><small>{}</small></td>", esc(a.official_missing.as_deref().unwrap_or("")));
            }
        }
        for l in crate::data::AttackLevel::ALL {
            match a.levels.iter().find(|s| s.level == l) {
                Some(s) => {
                    let _ = write!(h, "<td>{} / {} <small>({}, {} tasks)</small></td>", est(&s.macro_accuracy), est(&s.pooled_accuracy), s.n, s.tasks);
                }
                None => h += "<td></td>",
            }
        }
        h += "</tr>";
    }
    h += "</table><p><small>Official score: AdvGLUE's <code>evaluate.py</code> rules (QQP = mean of accuracy and F1, MNLI = mean of matched and mismatched, overall = mean of five tasks); it needs all six dev tasks in full.</small></p>";
    // Per task and level, with intervals.
    h += "<details><summary>Accuracy per task, level and method</summary><table><tr><th class=\"l\">model</th><th class=\"l\">task</th><th class=\"l\">group</th><th>n</th><th>accuracy</th></tr>";
    for u in r.units.iter().filter(|u| matches!(u.split, Split::AdvGlue | Split::AdvGlueOriginal)) {
        for g in u.by_level.iter().chain(&u.by_method) {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{} {}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&u.model),
                u.task,
                u.split,
                esc(&g.name),
                g.n,
                est(&g.accuracy)
            );
        }
    }
    h + "</table></details>"
}

fn robustness_section(r: &Results) -> String {
    if r.robustness.is_empty() {
        return String::new();
    }
    let mut h = String::from("<h2>Robustness</h2><table><tr><th class=\"l\">model</th><th class=\"l\">task</th><th>paired n</th><th>clean acc.</th><th>adversarial acc.</th><th>drop</th><th>broken</th><th>repaired</th><th>GLUE dev − AdvGLUE</th></tr>");
    let o = |x: &Option<Estimate>| x.as_ref().map(est).unwrap_or_default();
    let c = |x: Option<usize>| x.map(|v| v.to_string()).unwrap_or_default();
    for g in &r.robustness {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.model),
            g.task,
            c(g.paired_n),
            o(&g.clean_accuracy),
            o(&g.adversarial_accuracy),
            o(&g.accuracy_drop),
            c(g.broken),
            c(g.repaired),
            o(&g.dev_minus_advglue)
        );
    }
    h + "</table><p><small>Paired: the AdvGLUE examples that have a clean original (<code>advglue-original</code>), scored clean and attacked; broken = right on the original, wrong when attacked.</small></p>"
}

/// `text` escaped, with the byte spans `marks` (sorted, non-overlapping are marked; an overlapping one is skipped)
/// wrapped in `<mark>`.
fn marked(text: &str, marks: &[crate::attacks::text::Span]) -> String {
    let mut h = String::new();
    let mut at = 0;
    for s in marks {
        if s.start < at || s.end > text.len() || !text.is_char_boundary(s.start) || !text.is_char_boundary(s.end) || s.is_empty() {
            continue;
        }
        h += &esc(&text[at..s.start]);
        h += "<mark>";
        h += &esc(&text[s.start..s.end]);
        h += "</mark>";
        at = s.end;
    }
    h + &esc(&text[at..])
}

fn compression_section(r: &Results) -> String {
    let compressed: Vec<_> = r.provenance.models.iter().filter_map(|m| m.compression.as_ref().map(|c| (m, c))).collect();
    if compressed.is_empty() {
        return String::new();
    }
    let mut h = String::from("<h2>Compression</h2><p>Packed form: quantized and low-rank weights run as stored (int8 and int4 codes with their scales, packed ternary, both low-rank factors of SVD, SFSD and the surgical scan, with SFSD's bias), and their bytes are those tensors'; pruned weights run dense (no sparse format), counted dense except 2:4 (kept values and 2-bit indices) and structured rows (kept rows). HGRN-bit gets the f32 reference form (its BitLinear loader reads nothing else), with the packed form's bytes.</p><table><tr><th class=\"l\">model</th><th>weights</th><th>f32</th><th>compressed</th><th>bits / weight</th><th>sparsity</th><th>relative error</th><th>layers</th><th>time</th><th class=\"l\">left as they were</th></tr>");
    for (m, c) in &compressed {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{:.4}</td><td>{} → {}</td><td>{}</td><td class=\"l\"><small>{}</small></td></tr>",
            esc(&m.name),
            big(c.weights as f64),
            mb(c.bytes_f32 as u64),
            mb(c.bytes_compressed as u64),
            c.bits_per_weight,
            pct(c.sparsity),
            c.relative_error,
            c.layers_before,
            c.layers_after,
            m.timing.as_ref().map_or("–".into(), |t| format!("{:.2} s", t.compress_seconds)),
            esc(&c.skipped.join("; "))
        );
    }
    h += "</table>";
    for (m, c) in &compressed {
        let Some(scan) = &c.scan else { continue };
        let _ = write!(
            h,
            "<h3>Surgical scan: {}</h3><p>{} bases, δ = {}, blocks from {} searched, {} examples ({} per search chunk, {} in the 20% check, {} in the test split), {} evaluations. Test accuracy {} → {}; searched parameters {} → {}.</p><table><tr><th class=\"l\">linear</th><th>κ</th><th class=\"l\">chunk ranks</th><th>rank</th><th>20% check</th><th class=\"l\">kept</th></tr>",
            esc(&m.name),
            if c.calibration.is_some() { "Feature-space" } else { "Weight-space" },
            scan.delta,
            scan.start_block,
            scan.examples,
            scan.splits.chunks[0].len(),
            scan.splits.block.len(),
            scan.splits.test.len(),
            scan.evaluations,
            pct(scan.test_accuracy_before),
            pct(scan.test_accuracy_after),
            big(scan.params_before as f64),
            big(scan.params_after as f64),
        );
        for s in &scan.steps {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                esc(&s.linear),
                s.kappa,
                s.chunk_ranks.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "),
                s.rank,
                s.block_accuracy.map_or("–".into(), pct),
                if s.kept { "decomposed" } else { "dense" }
            );
        }
        h += "</table>";
    }
    if !r.hemorrhage.is_empty() {
        h += "<h3>Hemorrhage</h3><table><tr><th class=\"l\">model</th><th class=\"l\">task / split</th><th>n</th><th>original acc.</th><th>compressed acc.</th><th>drop</th><th>KL (nats)</th><th>agreement</th><th>broken</th><th>repaired</th><th>perplexity (LM head)</th></tr>";
        for x in &r.hemorrhage {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&x.model),
                x.task,
                x.split,
                x.n,
                pct(x.base_accuracy),
                pct(x.accuracy),
                est(&x.accuracy_drop),
                x.kl,
                pct(x.agreement),
                x.broken,
                x.repaired,
                match (x.perplexity_base, x.perplexity) {
                    (Some(b), Some(c)) => format!("{b:.1} → {c:.1}"),
                    _ => "–".into(),
                }
            );
        }
        h += "</table>";
        // Per original: accuracy against stored bits per weight on the first (task, split), the original at 32.
        let (task, split) = (r.hemorrhage[0].task, r.hemorrhage[0].split);
        let mut bases: Vec<&str> = Vec::new();
        for x in &r.hemorrhage {
            if !bases.contains(&x.base.as_str()) {
                bases.push(&x.base);
            }
        }
        for base in bases {
            let mut points: Vec<(String, f64, f64)> = Vec::new();
            for x in r.hemorrhage.iter().filter(|x| x.base == base && x.task == task && x.split == split) {
                if points.is_empty() {
                    points.push((format!("{base} (f32)"), 32.0, x.base_accuracy));
                }
                if let Some((_, c)) = compressed.iter().find(|(m, _)| m.name == x.model) {
                    if c.tensors > 0 {
                        points.push((x.model.clone(), c.bits_per_weight, x.accuracy));
                    }
                }
            }
            if points.len() > 1 {
                match charts::scatter_log_x_with(&format!("{base}: accuracy vs bits per weight ({task} {split})"), &points, "bits per weight (compressed form)", "accuracy", &|x| format!("{x:.0}")) {
                    Ok(svg) => {
                        let _ = write!(h, "<div class=\"chart\">{svg}</div>");
                    }
                    Err(e) => {
                        let _ = write!(h, "<p class=\"warn\">{}</p>", esc(&e.to_string()));
                    }
                }
            }
        }
    }
    h + &curves_section(r)
}

/// Hemorrhage curves: per (original, task, split) one chart of retention against strength, a line per
/// family, and the thresholds of each family.
fn curves_section(r: &Results) -> String {
    if r.curves.is_empty() {
        return String::new();
    }
    let mut h = String::from("<h3>Hemorrhage curves</h3><p>Retention (compressed accuracy / original accuracy) against each family's strength: share of weights removed (pruning), 1 − bits/32 (quantisation), rank reduction (low rank), share of blocks removed. Threshold: the knee of the piecewise fit of −log retention (power law, then exponential; methods.md §4.4); s*₉₅: the largest strength that keeps 95% of the accuracy.</p><table><tr><th class=\"l\">original</th><th class=\"l\">task / split</th><th class=\"l\">family</th><th class=\"l\">strengths</th><th>threshold (fit)</th><th>exponent c</th><th>s*₉₅</th></tr>");
    for c in &r.curves {
        let strengths: Vec<String> = c.points.iter().map(|p| format!("{:.2}: {}", p.strength, pct(p.retention))).collect();
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{} {}</td><td class=\"l\">{}</td><td class=\"l\"><small>{}</small></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.base),
            c.task,
            c.split,
            esc(&c.family),
            esc(&strengths.join(", ")),
            c.fit.as_ref().map_or("–".into(), |f| format!("{:.2}", f.s0)),
            c.fit.as_ref().map_or("–".into(), |f| format!("{}", f.c)),
            c.threshold_95.map_or("–".into(), |s| format!("{s:.2}")),
        );
    }
    h += "</table>";
    let mut groups: Vec<(&str, crate::data::Task, crate::data::Split)> = Vec::new();
    for c in &r.curves {
        if !groups.contains(&(c.base.as_str(), c.task, c.split)) {
            groups.push((&c.base, c.task, c.split));
        }
    }
    for (base, task, split) in groups {
        let lines: Vec<charts::Line> = r
            .curves
            .iter()
            .filter(|c| c.base == base && c.task == task && c.split == split)
            .map(|c| charts::Line { name: c.family.clone(), points: c.points.iter().map(|p| (p.strength, p.retention)).collect() })
            .collect();
        match charts::lines(&format!("{base}: retention vs compression strength ({task} {split})"), &lines, "strength (family's own axis)", "retention", true) {
            Ok(svg) => {
                let _ = write!(h, "<div class=\"chart\">{svg}</div>");
            }
            Err(e) => {
                let _ = write!(h, "<p class=\"warn\">{}</p>", esc(&e.to_string()));
            }
        }
    }
    h
}

fn opt_pct(x: Option<f64>) -> String {
    x.map(pct).unwrap_or_else(|| "–".into())
}

/// Recovery as a fraction of the lost accuracy (`+40%`), or a dash when nothing was lost.
fn recovery(x: Option<f64>) -> String {
    x.map(|v| format!("{:+.0}%", 100.0 * v)).unwrap_or_else(|| "–".into())
}

/// The spec's `repair` section: temperature scaling and decoding calibration of the repaired
/// compressed copies (the fits on the calibration sample, then applied to each evaluated split), and
/// the soft-prompt pools.
fn repair_section(r: &Results) -> String {
    let rows: Vec<_> = r.hemorrhage.iter().filter_map(|x| x.calibration.as_ref().map(|c| (x, c))).collect();
    if rows.is_empty() && r.repair.is_empty() && r.calibration.is_empty() {
        return String::new();
    }
    let mut h = String::from("<h2>Repair</h2>");
    if !r.calibration.is_empty() {
        h += "<h3>Temperature scaling and decoding calibration: the fits</h3><p>On a seeded calibration sample of each task. T (gold labels): temperature scaling (Guo et al. 2017), the T minimising the compressed copy's NLL on the sample; ECE with 15 bins. T, β (original): the compressed copy's <code>softmax(z/T + β)</code> fitted to the original model's outputs by KL (methods.md §4.5.3).</p><table><tr><th class=\"l\">model</th><th class=\"l\">task</th><th class=\"l\">sample</th><th>T (gold)</th><th>NLL before → after</th><th>ECE before → after</th><th>T (original)</th><th class=\"l\">β</th><th>KL before → after</th></tr>";
        for c in &r.calibration {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{} of {}</td><td>{:.3}</td><td>{:.4} → {:.4}</td><td>{:.4} → {:.4}</td><td>{:.3}</td><td class=\"l\"><small>{}</small></td><td>{:.4} → {:.4}</td></tr>",
                esc(&c.model),
                c.task,
                c.n,
                c.split,
                c.temperature,
                c.nll,
                c.nll_after,
                c.ece,
                c.ece_after,
                c.kl_temperature,
                c.kl_bias.iter().map(|b| format!("{b:+.3}")).collect::<Vec<_>>().join(" "),
                c.kl,
                c.kl_after
            );
        }
        h += "</table>";
    }
    if !rows.is_empty() {
        h += "<h3>Temperature scaling and decoding calibration: on the evaluated splits</h3><p>The fits above applied to each evaluated split (n: its examples, less the calibration sample when drawn from it). Temperature scaling keeps every prediction: only the ECE moves; the decoding calibration's bias β can change predictions, hence the agreement with the original.</p><table><tr><th class=\"l\">model</th><th class=\"l\">task / split</th><th>n</th><th>T (gold)</th><th>ECE before → after</th><th>KL before → after</th><th>agreement before → after</th></tr>";
        for (x, c) in rows {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{} {}</td><td>{}</td><td>{:.3}</td><td>{:.4} → {:.4}</td><td>{:.4} → {:.4}</td><td>{} → {}</td></tr>",
                esc(&x.model),
                x.task,
                x.split,
                c.n,
                c.temperature,
                c.ece,
                c.ece_after,
                c.kl,
                c.kl_after,
                pct(c.agreement),
                pct(c.agreement_after)
            );
        }
        h += "</table>";
    }
    if !r.repair.is_empty() {
        h += "<h3>Soft prompts chosen per input (IDP)</h3><p>A pool of m prompts × n vectors trained on the compressed copy (frozen) over the calibration sample; each input runs with the prompt it attends to most (methods.md §3.3), or the most confident one. Fixed: the pool's best prompt on the calibration sample, for every input; long: one prompt of m·n vectors trained alone. A text pool (m × text) holds hard text prompts read through the LM head, nothing trained: original and compressed are both measured with the original's best template, fixed is the copy's best template, IDP the most confident template per input; its loss is the calibration cross-entropy with the original's template → with the choice. Recovery = (acc − acc<sub>compressed</sub>) / (acc<sub>original</sub> − acc<sub>compressed</sub>), a dash when the compression lost nothing. n: the split's evaluated examples, less the calibration sample when drawn from it.</p><table><tr><th class=\"l\">model</th><th class=\"l\">task / split</th><th>n</th><th>original</th><th>compressed</th><th>+ fixed prompt</th><th>+ long prompt</th><th>+ IDP</th><th>IDP − fixed</th><th>recovery fixed</th><th>recovery long</th><th>recovery IDP</th><th class=\"l\">prompts chosen</th><th>m × n</th><th>extra params</th><th>calib. loss</th><th>training</th></tr>";
        for x in &r.repair {
            for s in &x.splits {
                let _ = write!(
                    h,
                    "<tr><td class=\"l\">{}</td><td class=\"l\">{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:+.1}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td>{} × {}</td><td>{}</td><td>{:.3} → {:.3}</td><td>{:.1} s</td></tr>",
                    esc(&x.model),
                    x.task,
                    s.split,
                    s.n,
                    pct(s.accuracy_original),
                    pct(s.accuracy_compressed),
                    pct(s.accuracy_best_prompt),
                    opt_pct(s.accuracy_long_prompt),
                    pct(s.accuracy_idp),
                    100.0 * s.idp_minus_best_prompt,
                    recovery(s.recovery_best_prompt),
                    recovery(s.recovery_long_prompt),
                    recovery(s.recovery),
                    s.histogram.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" / "),
                    x.prompts,
                    if x.pool.is_soft() { x.tokens.to_string() } else { "text".into() },
                    big(x.extra_parameters as f64),
                    x.loss_before,
                    x.loss_after,
                    x.timing.train_seconds + x.timing.long_train_seconds.unwrap_or(0.0)
                );
            }
        }
        h += "</table>";
        for x in r.repair.iter().filter(|x| !x.templates.is_empty()) {
            let _ = write!(h, "<p>Text prompts of {} on {} (accuracy on the calibration sample, compressed copy):</p><ol start=\"0\">", esc(&x.model), x.task);
            for (i, t) in x.templates.iter().enumerate() {
                let mark = [(Some(i) == x.best_prompt_original, "the original's best"), (i == x.best_prompt, "the copy's best")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, w)| *w)
                    .collect::<Vec<_>>()
                    .join(", ");
                let acc = x.prompt_calibration_accuracy.get(i).map(|&a| pct(a)).unwrap_or_else(|| "–".into());
                let _ = write!(h, "<li><code>{}</code> {acc}{}</li>", esc(t), if mark.is_empty() { String::new() } else { format!(" ({mark})") });
            }
            h += "</ol>";
        }
    }
    h
}

/// How many successful attacks per unit the report shows.
const ATTACK_EXAMPLES: usize = 5;

fn attacks_section(r: &Results) -> String {
    if r.attacks.is_empty() {
        return String::new();
    }
    let mut h = String::from("<h2>Attacks</h2><p>TextAttack's summary, percent. Success rate skips the examples the model already got wrong; perturbed words are averaged over successful attacks; queries over attacked examples.</p><table><tr><th class=\"l\">model</th><th class=\"l\">task / split</th><th class=\"l\">recipe</th><th class=\"l\">level</th><th>budget</th><th>max queries</th><th>n</th><th>original acc.</th><th>acc. under attack</th><th>success rate</th><th>perturbed words</th><th>queries</th><th>queries/s</th></tr>");
    let o = |x: Option<f64>| x.map(pct).unwrap_or_else(|| "–".into());
    for a in &r.attacks {
        let s = &a.summary;
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{} {}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td></tr>",
            esc(&a.model),
            a.task,
            a.split,
            a.attack.recipe.name(),
            a.attack.recipe.level().name(),
            pct(a.attack.budget),
            a.attack.max_queries,
            s.n,
            pct(s.original_accuracy),
            pct(s.accuracy_under_attack),
            o(s.success_rate),
            o(s.perturbed_word_share),
            s.mean_queries.map(|q| format!("{q:.1}")).unwrap_or_else(|| "–".into()),
            a.timing.queries_per_second
        );
    }
    h += "</table>";
    for m in &r.transfer {
        let models: Vec<&str> = {
            let mut v: Vec<&str> = Vec::new();
            for c in &m.cells {
                if !v.contains(&c.source.as_str()) {
                    v.push(&c.source);
                }
            }
            v
        };
        let _ = write!(h, "<h3>Transfer: {} {} {}</h3><p><small>Rows: the model the texts fooled (n = texts). Cells: the target's accuracy on those texts, its accuracy on their originals, and the share it had right that now fool it.</small></p><table><tr><th class=\"l\">crafted against ↓ / scored on →</th>", m.task, m.split, m.attack.recipe.name());
        for t in &models {
            let _ = write!(h, "<th>{}</th>", esc(t));
        }
        h += "</tr>";
        for src in &models {
            let n = m.cells.iter().find(|c| c.source == *src).map_or(0, |c| c.n);
            let _ = write!(h, "<tr><td class=\"l\">{} <small>(n = {n})</small></td>", esc(src));
            for t in &models {
                match m.cells.iter().find(|c| c.source == *src && c.target == *t) {
                    Some(c) => {
                        let _ = write!(h, "<td>{} <small>(clean {}; transfer {})</small></td>", o(c.adversarial_accuracy), o(c.clean_accuracy), o(c.transfer_rate));
                    }
                    None => h += "<td></td>",
                }
            }
            h += "</tr>";
        }
        h += "</table>";
    }
    for a in &r.attacks {
        let wins: Vec<_> = a.records.iter().filter(|x| x.outcome == crate::attacks::search::Outcome::Succeeded).take(ATTACK_EXAMPLES).collect();
        if wins.is_empty() {
            continue;
        }
        let _ = write!(h, "<details><summary>{} × {} on {} {}: first {} successful attacks</summary><table><tr><th>idx</th><th class=\"l\">original</th><th class=\"l\">attacked (changes marked)</th><th>before</th><th>after</th></tr>", esc(&a.model), a.attack.recipe.name(), a.task, a.split, wins.len());
        for x in wins {
            let seg = |i: &crate::attacks::search::Input| i.b.clone().unwrap_or_else(|| i.a.clone());
            let (orig, new) = (seg(&x.original), seg(&x.perturbed));
            let olds: Vec<_> = x.changes.iter().map(|c| c.change.original).collect();
            let mut news: Vec<_> = x.changes.iter().map(|c| c.change.new).collect();
            news.sort_by_key(|s| (s.start, s.end));
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{} ({:.2})</td><td>{} ({:.2})</td></tr>",
                x.idx,
                marked(&orig, &olds),
                marked(&new, &news),
                x.before.prediction,
                x.before.confidence(),
                x.after.prediction,
                x.after.confidence()
            );
        }
        h += "</table></details>";
    }
    h
}

fn efficiency_table(r: &Results) -> String {
    let mut h = String::from("<h2>Efficiency</h2><table><tr><th class=\"l\">model</th><th class=\"l\">task / split</th><th>weights</th><th>tokens</th><th>mul / ex.</th><th>add / ex.</th><th>of which in matmuls (mul)</th><th>other / ex.</th><th>ex/s</th><th>latency p50 / p95 ms</th><th>peak memory</th><th>peak GPU</th></tr>");
    for u in &r.units {
        let e = &u.efficiency;
        let t = &u.timing;
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{} {}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2} / {:.2}</td><td>{}</td><td>{}</td></tr>",
            esc(&u.model),
            u.task,
            u.split,
            mb(e.weight_bytes),
            e.mean_tokens,
            big(e.ops_per_example.mul),
            big(e.ops_per_example.add),
            big(e.ops_per_example.matmul_mul),
            big(e.ops_per_example.other),
            t.examples_per_second,
            t.latency_ms_p50,
            t.latency_ms_p95,
            t.peak_memory_bytes.map(mb).unwrap_or_default(),
            t.peak_gpu_bytes.map(mb).unwrap_or_default()
        );
    }
    h + "</table><p><small>Operations per forward pass at each example's length, counted op by op on a shape-only backend (multiply-accumulates count one of each; BitLinear adds or subtracts each non-zero ternary weight). Latency is per example, its batch's time divided by the batch size.</small></p>"
}

fn provenance_section(r: &Results) -> String {
    let mut h = String::from("<h2>Provenance</h2><table><tr><th class=\"l\">file</th><th>bytes</th><th class=\"l\">sha256</th></tr>");
    for m in &r.provenance.models {
        for f in &m.files {
            let _ = write!(h, "<tr><td class=\"l\">{}/{}</td><td>{}</td><td class=\"l\"><code>{}</code></td></tr>", esc(&m.name), esc(&f.path), f.bytes, esc(&f.sha256));
        }
    }
    for f in &r.provenance.data {
        let _ = write!(h, "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l\"><code>{}</code></td></tr>", esc(&f.path), f.bytes, esc(&f.sha256));
    }
    // The calibration rows a compression drew (the subset's own hash: task, size and seed pick the rows).
    for m in &r.provenance.models {
        let Some(c) = m.compression.as_ref().and_then(|c| c.calibration.as_ref()) else { continue };
        let task = c.task.map_or("mixed".to_string(), |t| t.name().to_string());
        let label = format!("{} — calibration: {}, {task}, {} rows, seed {}", m.name, c.source, c.size, c.seed);
        let _ = write!(h, "<tr><td class=\"l\">{}</td><td>–</td><td class=\"l\"><code>{}</code></td></tr>", esc(&label), esc(&c.sha256));
    }
    h += "</table><details><summary>Experiment spec</summary><pre>";
    h += &esc(&r.spec.to_json());
    h + "</pre></details>"
}

/// Per-example predictions as CSV (RFC 4180 quoting where needed).
pub fn csv(r: &Results) -> String {
    let classes = r.units.iter().flat_map(|u| u.predictions.iter().map(|p| p.probs.len())).max().unwrap_or(0);
    let mut out = String::from("model,architecture,task,split,idx,label,prediction,correct,tokens,level,method");
    for c in 0..classes {
        let _ = write!(out, ",p{c}");
    }
    out.push('\n');
    let q = |s: &str| if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() };
    for u in &r.units {
        for p in &u.predictions {
            let _ = write!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{}",
                q(&u.model),
                q(&u.architecture),
                u.task,
                u.split,
                p.idx,
                p.label,
                p.prediction,
                (p.prediction == p.label) as u8,
                p.tokens,
                p.level.map(|l| l.name()).unwrap_or(""),
                q(p.method.as_deref().unwrap_or(""))
            );
            for c in 0..classes {
                match p.probs.get(c) {
                    Some(v) => {
                        let _ = write!(out, ",{v}");
                    }
                    None => out.push(','),
                }
            }
            out.push('\n');
        }
    }
    out
}
