// The experiment builder: a form over the experiment spec. Every change writes the fields the form owns into the
// spec JSON (the textarea under "Edit the spec as JSON"), keeping whatever else the JSON holds (a repair section, a
// bootstrap count…), so the JSON stays what runs and what a link carries. A spec loaded from a link or typed by hand
// is shown in the form as far as the form can show it.
import { RECIPES } from './attack.js';

export const MODELS = [
  ['transformer', 'Transformer++'],
  ['gla', 'GLA'],
  ['hgrn_bit', 'MatMul-free (HGRN-bit)'],
];
export const TASKS = [
  ['sst2', 'SST-2'], ['cola', 'CoLA'], ['mrpc', 'MRPC'], ['qqp', 'QQP'], ['mnli', 'MNLI'], ['mnli-mm', 'MNLI-mm'], ['qnli', 'QNLI'], ['rte', 'RTE'],
];
export const SPLITS = [
  ['validation', 'GLUE dev'],
  ['advglue-original', 'AdvGLUE originals (clean)'],
  ['advglue', 'AdvGLUE (adversarial)'],
];
// Each compression with the parameter its level sets; `levels` takes a comma list, one compressed copy per level
// (a sweep: the hemorrhage curves need several).
export const COMPRESSIONS = [
  { method: 'int8', name: 'int8 per channel', param: null },
  { method: 'int4', name: 'int4 group-wise', param: 'group', levels: '64', hint: 'group: 32, 64 or 128' },
  { method: 'ternary', name: 'ternary (BitNet b1.58)', param: null },
  { method: 'magnitude', name: 'magnitude pruning', param: 'sparsity', levels: '0.3, 0.5, 0.7', hint: 'sparsity 0–1' },
  { method: 'wanda', name: 'Wanda pruning', param: 'sparsity', levels: '0.5', hint: 'sparsity 0–1' },
  { method: 'gradient_aware', name: 'gradient-aware pruning', param: 'sparsity', levels: '0.5', hint: 'sparsity 0–1' },
  { method: 'n_m', name: '2:4 semi-structured', param: null },
  { method: 'structured_rows', name: 'structured (channels)', param: 'sparsity', levels: '0.25', hint: 'sparsity 0–1' },
  { method: 'structured_heads', name: 'structured (heads)', param: 'sparsity', levels: '0.25', hint: 'sparsity 0–1' },
  { method: 'svd', name: 'truncated SVD', param: 'rank_fraction', levels: '0.5', hint: 'rank fraction 0–1' },
  { method: 'sfsd', name: 'feature-space low rank (SFSD)', param: 'rank_fraction', levels: '0.5', hint: 'rank fraction 0–1' },
  { method: 'drop_layers', name: 'drop a layer', param: 'layers', levels: '1', hint: 'layer index' },
  { method: 'layer_parallel', name: 'layer-parallel pair', param: 'start', levels: '0', hint: 'first layer of the pair' },
];

const $ = (id) => document.getElementById(id);

function checkboxes(container, name, items) {
  container.replaceChildren(...items.map(([value, label]) => {
    const l = document.createElement('label');
    l.className = 'check';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.name = name;
    box.value = value;
    l.append(box, ` ${label}`);
    return l;
  }));
}

// Models the page loaded (www/models.js: a folder URL or local:NAME) join MODELS and the form's checkboxes.
let modelBoxes = null;
let writeSpec = null;
/** Adds a loaded model to the form's models (once); returns whether it was new. */
export function addModel(value, label) {
  if (MODELS.some(([v]) => v === value)) return false;
  MODELS.push([value, label]);
  if (modelBoxes) {
    const l = document.createElement('label');
    l.className = 'check';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.name = 'model';
    box.value = value;
    box.addEventListener('change', () => writeSpec?.());
    l.append(box, ` ${label}`);
    l.title = value;
    modelBoxes.append(l);
  }
  return true;
}

const checked = (container) => [...container.querySelectorAll('input:checked')].map((b) => b.value);
const setChecked = (container, values) => container.querySelectorAll('input').forEach((b) => { b.checked = values.includes(b.value); });

/** One compression recipe per level of `c` (`levels`: a comma list), or an error message. */
export function compressionsOf(c, levels) {
  if (!c) return [];
  if (!c.param) return [{ method: c.method }];
  const values = String(levels).split(',').map((s) => s.trim()).filter(Boolean);
  if (!values.length) return `give at least one ${c.hint}`;
  const out = [];
  for (const v of values) {
    const x = Number(v);
    if (!Number.isFinite(x)) return `${JSON.stringify(v)} is not a number (${c.hint})`;
    if (c.param === 'layers') out.push({ method: c.method, layers: [x] });
    else if (c.param === 'start') out.push({ method: c.method, start: x, end: x + 2 });
    else out.push({ method: c.method, [c.param]: x });
  }
  return out;
}

/** The level of a recipe as the form writes it, or null when the recipe is not one the form makes. */
function levelOf(r) {
  const c = COMPRESSIONS.find((k) => k.method === r.method);
  if (!c) return null;
  const extra = Object.keys(r).filter((k) => k !== 'method' && k !== c.param && !(c.param === 'start' && k === 'end'));
  if (extra.length) return null;
  if (!c.param) return '';
  if (c.param === 'layers') return Array.isArray(r.layers) && r.layers.length === 1 ? String(r.layers[0]) : null;
  if (c.param === 'start') return r.end === r.start + 2 ? String(r.start) : null;
  return r[c.param] === undefined ? null : String(r[c.param]);
}

export function initBuilder({ textarea, onChange }) {
  const el = {
    models: $('b-models'), tasks: $('b-tasks'), splits: $('b-splits'),
    attack: $('b-attack'), budget: $('b-budget'), queries: $('b-queries'),
    compression: $('b-compression'), levels: $('b-levels'), levelsLabel: $('b-levels-label'),
    backend: $('b-backend'), seed: $('b-seed'), limit: $('b-limit'), readout: $('b-readout'),
    note: $('b-note'),
  };
  checkboxes(el.models, 'model', MODELS);
  modelBoxes = el.models;
  checkboxes(el.tasks, 'task', TASKS);
  checkboxes(el.splits, 'split', SPLITS);
  const none = new Option('none', '');
  el.attack.replaceChildren(none, ...RECIPES.map(({ group, recipes }) => {
    const g = document.createElement('optgroup');
    g.label = group;
    g.append(...recipes.map(([value, name]) => new Option(name, value)));
    return g;
  }));
  el.compression.replaceChildren(new Option('none', ''), ...COMPRESSIONS.map((c) => new Option(c.name, c.method)));

  const compression = () => COMPRESSIONS.find((c) => c.method === el.compression.value);
  // Whether the form owns the spec's attacks and compressions: not while they are ones it cannot show.
  let ownAttacks = true;
  let ownCompressions = true;
  function syncLevels() {
    const c = compression();
    el.levels.disabled = !c?.param;
    el.levelsLabel.textContent = c?.param ? `Levels (${c.hint}; a comma list sweeps)` : 'Levels';
  }

  /** The fields the form owns, from the form; or an error message. */
  function owned() {
    const out = {
      models: checked(el.models),
      tasks: checked(el.tasks),
      splits: checked(el.splits),
      backend: el.backend.value,
      seed: Number(el.seed.value),
    };
    if (el.limit.value.trim() !== '') out.limit = Number(el.limit.value);
    if (el.readout.value !== 'auto') out.readout = el.readout.value;
    if (ownAttacks) out.attacks = el.attack.value ? [{ recipe: el.attack.value, budget: Number(el.budget.value), max_queries: Number(el.queries.value) }] : [];
    if (ownCompressions) {
      const cs = compressionsOf(compression(), el.levels.value);
      if (typeof cs === 'string') return cs;
      out.compressions = cs;
    }
    return out;
  }

  // Write the form into the JSON, keeping the fields it does not own.
  function write() {
    const o = owned();
    if (typeof o === 'string') {
      el.note.textContent = o;
      return;
    }
    let current = {};
    try {
      current = JSON.parse(textarea.value || '{}');
      if (!current || typeof current !== 'object' || Array.isArray(current)) current = {};
    } catch {
      current = {};
    }
    const spec = { ...current, ...o };
    for (const k of ['limit', 'readout']) if (!(k in o)) delete spec[k];
    // The repair section repairs compressed copies: none left, none to repair.
    if (Array.isArray(spec.compressions) && !spec.compressions.length) delete spec.repair;
    el.note.textContent = '';
    textarea.value = JSON.stringify(spec, null, 2);
    onChange?.();
  }

  /** Shows `spec` in the form as far as the form can; says what it cannot show. */
  function show(spec) {
    for (const m of spec.models ?? []) if (typeof m === 'string' && /^(https?:\/\/|local:)/.test(m)) addModel(m, m);
    setChecked(el.models, spec.models ?? []);
    setChecked(el.tasks, spec.tasks ?? []);
    setChecked(el.splits, spec.splits ?? ['validation', 'advglue']);
    el.backend.value = ['auto', 'webgpu', 'cpu'].includes(spec.backend) ? spec.backend : 'auto';
    el.seed.value = String(spec.seed ?? 42);
    el.limit.value = spec.limit == null ? '' : String(spec.limit);
    el.readout.value = ['head', 'prompt'].includes(spec.readout) ? spec.readout : 'auto';
    const hidden = [];
    const attacks = spec.attacks ?? [];
    const a = attacks[0];
    el.attack.value = a?.recipe ?? '';
    if (a) {
      el.budget.value = String(a.budget ?? 0.25);
      el.queries.value = String(a.max_queries ?? 2000);
    }
    ownAttacks = attacks.length <= 1;
    if (!ownAttacks) hidden.push(`${attacks.length} attacks`);
    const cs = spec.compressions ?? [];
    const levels = cs.map(levelOf);
    ownCompressions = !cs.length || (cs.every((r) => r.method === cs[0].method) && levels.every((l) => l !== null));
    if (cs.length && ownCompressions) {
      el.compression.value = cs[0].method;
      el.levels.value = levels.filter((l) => l !== '').join(', ');
    } else {
      el.compression.value = '';
      if (cs.length) hidden.push('its compressions');
    }
    syncLevels();
    if (spec.repair) hidden.push('a repair section');
    el.note.textContent = hidden.length ? `The JSON also has ${hidden.join(', ')}, which the form does not show: changing the form keeps ${hidden.length > 1 ? 'them' : 'it'} until you pick an attack or a compression here.` : '';
  }

  for (const input of document.querySelectorAll('#builder input, #builder select')) {
    input.addEventListener('change', () => {
      if (input === el.compression) {
        const c = compression();
        el.levels.value = c?.levels ?? '';
        syncLevels();
      }
      if ([el.attack, el.budget, el.queries].includes(input)) ownAttacks = true;
      if ([el.compression, el.levels].includes(input)) ownCompressions = true;
      write();
    });
  }
  syncLevels();
  writeSpec = write;
  return { show, write };
}
