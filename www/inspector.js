// The per-example inspector under an experiment's report: pick an attack or an evaluation of the results and see
// every example — for an attack the original and the attacked text with the changed spans marked, the prediction
// and its confidence before and after; for an evaluation the label, the prediction and its confidence, beside the
// original model's for a compressed copy — with a filter to the flipped ones. Built with DOM calls and textContent
// only: the texts come from results files, which may be crafted.

const LABELS = {
  sst2: ['negative', 'positive'],
  cola: ['unacceptable', 'acceptable'],
  mrpc: ['not_equivalent', 'equivalent'],
  qqp: ['not_duplicate', 'duplicate'],
  mnli: ['entailment', 'neutral', 'contradiction'],
  'mnli-mm': ['entailment', 'neutral', 'contradiction'],
  qnli: ['entailment', 'not_entailment'],
  rte: ['entailment', 'not_entailment'],
};
// Rows drawn at once (a filter narrows them; the count says how many match).
const MAX_ROWS = 300;

const label = (task, c) => LABELS[task]?.[c] ?? String(c);
const pct = (p) => `${(100 * p).toFixed(1)}%`;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

/** `text` with the byte spans `spans` ({start, end}, UTF-8 offsets) wrapped in <mark>, as DOM nodes. */
function marked(text, spans) {
  const bytes = utf8.encode(text);
  const out = document.createElement('span');
  let at = 0;
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    if (s.start < at || s.end > bytes.length || s.end <= s.start) continue;
    out.append(fromUtf8.decode(bytes.slice(at, s.start)));
    out.append(el('mark', fromUtf8.decode(bytes.slice(s.start, s.end))));
    at = s.end;
  }
  out.append(fromUtf8.decode(bytes.slice(at)));
  return out;
}

function verdictText(task, v) {
  return `${label(task, v.prediction)} (${pct(v.probs[v.prediction] ?? 0)})`;
}

/** The inspector's views of results `r`: one per attack, one per evaluation. */
function views(r) {
  const out = [];
  r.attacks?.forEach((a, i) => out.push({ key: `a${i}`, name: `attack: ${a.model} × ${a.attack.recipe} on ${a.task} ${a.split}`, attack: a }));
  r.units?.forEach((u, i) => {
    const base = r.provenance?.models?.find((m) => m.name === u.model)?.compressed_from;
    const baseUnit = base ? r.units.find((b) => b.model === base && b.task === u.task && b.split === u.split) : null;
    out.push({ key: `u${i}`, name: `evaluation: ${u.model} on ${u.task} ${u.split}`, unit: u, base: baseUnit });
  });
  return out;
}

function attackRows(a, onlyFlipped) {
  const table = el('table');
  const head = table.createTHead().insertRow();
  for (const h of ['idx', 'original (changed words marked)', 'attacked', 'label', 'before', 'after', 'outcome']) {
    const th = el('th', h);
    th.scope = 'col';
    head.append(th);
  }
  const body = table.createTBody();
  const records = a.records.filter((x) => !onlyFlipped || x.outcome === 'succeeded');
  for (const x of records.slice(0, MAX_ROWS)) {
    const tr = body.insertRow();
    tr.dataset.outcome = x.outcome;
    const seg = (i) => (x.segment === 'second' && i.b != null ? i.b : i.a);
    tr.insertCell().textContent = String(x.idx);
    const o = tr.insertCell();
    o.className = 'l';
    o.append(marked(seg(x.original), x.changes.map((c) => c.original)));
    const n = tr.insertCell();
    n.className = 'l';
    n.append(marked(seg(x.perturbed), x.changes.map((c) => c.new)));
    tr.insertCell().textContent = label(a.task, x.label);
    tr.insertCell().textContent = verdictText(a.task, x.before);
    tr.insertCell().textContent = verdictText(a.task, x.after);
    tr.insertCell().textContent = x.outcome;
  }
  return [table, records.length];
}

function unitRows(v, onlyFlipped) {
  const { unit: u, base } = v;
  const table = el('table');
  const head = table.createTHead().insertRow();
  const cols = ['idx', 'label', `${u.model}`, 'confidence', ...(base ? [`${base.model}`, 'confidence'] : []), 'tokens', 'level / method'];
  for (const h of cols) {
    const th = el('th', h);
    th.scope = 'col';
    head.append(th);
  }
  const body = table.createTBody();
  const baseOf = new Map((base?.predictions ?? []).map((p) => [p.idx, p]));
  // Flipped: a compressed copy's prediction differs from its original's; an original's prediction is wrong.
  const flipped = (p) => (base ? baseOf.get(p.idx)?.prediction !== p.prediction : p.prediction !== p.label);
  const rows = u.predictions.filter((p) => !onlyFlipped || flipped(p));
  for (const p of rows.slice(0, MAX_ROWS)) {
    const tr = body.insertRow();
    tr.dataset.flipped = String(flipped(p));
    tr.dataset.right = String(p.prediction === p.label);
    const cells = [String(p.idx), label(u.task, p.label), label(u.task, p.prediction), pct(p.probs[p.prediction] ?? 0)];
    if (base) {
      const b = baseOf.get(p.idx);
      cells.push(b ? label(u.task, b.prediction) : '—', b ? pct(b.probs[b.prediction] ?? 0) : '—');
    }
    cells.push(String(p.tokens), [p.level, p.method].filter(Boolean).join(' / '));
    for (const c of cells) tr.insertCell().textContent = c;
  }
  return [table, rows.length];
}

/** Fills `root` with the inspector of results `r` (parsed JSON). */
export function inspect(root, r) {
  const vs = views(r);
  root.replaceChildren();
  if (!vs.length) return;
  const h = el('h2', 'Inspect examples');
  const row = el('div', null, 'row fields');
  const pick = el('select');
  pick.id = 'insp-view';
  const pickLabel = el('label', 'Show');
  pickLabel.htmlFor = 'insp-view';
  pick.append(...vs.map((v) => new Option(v.name, v.key)));
  const only = el('input');
  only.type = 'checkbox';
  only.id = 'insp-flipped';
  const onlyLabel = el('label', ' only flipped examples (an attack that succeeded; a compressed copy that disagrees with its original; an original that is wrong)', 'check');
  onlyLabel.prepend(only);
  const f1 = el('div', null, 'field');
  f1.append(pickLabel, pick);
  row.append(f1, onlyLabel);
  const count = el('p', null, 'muted');
  count.id = 'insp-count';
  count.setAttribute('aria-live', 'polite');
  const holder = el('div', null, 'inspector-table');
  const draw = () => {
    const v = vs.find((x) => x.key === pick.value) ?? vs[0];
    const [table, n] = v.attack ? attackRows(v.attack, only.checked) : unitRows(v, only.checked);
    const total = v.attack ? v.attack.records.length : v.unit.predictions.length;
    count.textContent = `${n} of ${total} examples${n > MAX_ROWS ? ` (the first ${MAX_ROWS} shown)` : ''}`;
    root.dataset.shown = String(Math.min(n, MAX_ROWS));
    holder.replaceChildren(table);
  };
  pick.addEventListener('change', draw);
  only.addEventListener('change', draw);
  root.append(h, row, count, holder);
  draw();
}
