// The "Attack a text" panel: one text (or pair) goes to the worker, which attacks it with one recipe against one
// bundled model on the CPU path (the core's `attack_text`, the search `trilemma attack` and the experiment engine
// use) and returns the attack record. The label attacked is the model's own prediction on the unchanged text: a
// typed text has no gold label. Everything from the user or the model is set with textContent; the changed spans
// are cut out of the texts here, from the record's UTF-8 byte offsets.

const $ = (id) => document.getElementById(id);

// The recipes of `attacks::search::Recipe`, grouped as the page's select shows them, with their level.
export const RECIPES = [
  { group: 'Model-guided', recipes: [
    ['textbugger', 'TextBugger', 'word'],
    ['textfooler', 'TextFooler', 'word'],
    ['stress_test', 'StressTest', 'sentence'],
    ['checklist', 'CheckList', 'sentence'],
    ['combined', 'Combined (distractor + TextBugger + TextFooler)', 'combined'],
  ] },
  { group: 'Random baselines (non-adaptive)', recipes: [
    ['random_textbugger', 'Random TextBugger', 'word'],
    ['random_textfooler', 'Random TextFooler', 'word'],
    ['random_stress_test', 'Random StressTest', 'sentence'],
    ['random_checklist', 'Random CheckList', 'sentence'],
    ['random_combined', 'Random combined', 'combined'],
  ] },
];

// `attacks::Transformation`'s names, as a reader would say them (the title of each marked change).
const KINDS = {
  textbugger_insert: 'TextBugger Insert (a space inside the word)',
  textbugger_delete: 'TextBugger Delete (an inner character)',
  textbugger_swap: 'TextBugger Swap (two inner characters)',
  textbugger_sub_c: 'TextBugger Sub-C (a look-alike or neighbouring key)',
  textbugger_sub_w: 'TextBugger Sub-W (an embedding neighbour)',
  textbugger: 'TextBugger (a random bug)',
  textfooler_synonym: 'TextFooler synonym',
  stress_test_tautology: 'StressTest tautology',
  stress_test_negation: 'StressTest negation',
  stress_test_length: 'StressTest length mismatch',
  checklist_url: 'CheckList URL',
  checklist_handle: 'CheckList handle',
};
export const kindName = (kind) => KINDS[kind] ?? kind;

// The page's tasks (the classify panel's select); pair tasks take a second text, which the attack edits.
const TASKS = {
  sst2: { name: 'SST-2', pair: null },
  cola: { name: 'CoLA', pair: null },
  mrpc: { name: 'MRPC', pair: ['Sentence 1', 'Sentence 2'] },
  qqp: { name: 'QQP', pair: ['Question 1', 'Question 2'] },
  mnli: { name: 'MNLI', pair: ['Premise', 'Hypothesis'] },
  qnli: { name: 'QNLI', pair: ['Question', 'Sentence'] },
  rte: { name: 'RTE', pair: ['Sentence 1', 'Sentence 2'] },
};
const PAIR_EXAMPLES = {
  mrpc: ['The company said profits rose in the third quarter .', 'Profits increased in the third quarter , the company said .'],
  qqp: ['How do I learn to cook ?', 'What is the best way to learn cooking ?'],
  mnli: ['A man is playing a guitar on stage .', 'A man is performing music .'],
  qnli: ['What color is the sky ?', 'On a clear day the sky is blue .'],
  rte: ['The cat sat on the mat all afternoon .', 'A cat was on the mat .'],
};

/**
 * `text` cut at UTF-8 byte offsets: `at(byte)` is the JavaScript (UTF-16) index of that byte offset. An offset
 * inside a character or past the end is an error (the record does not belong to this text).
 */
export function byteIndex(text) {
  const index = new Map();
  let bytes = 0;
  let units = 0;
  for (const ch of text) {
    index.set(bytes, units);
    const cp = ch.codePointAt(0);
    bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    units += ch.length;
  }
  index.set(bytes, units);
  return (byte) => {
    const i = index.get(byte);
    if (i === undefined) throw new Error(`byte offset ${byte} is not a character boundary of the text (${bytes} bytes)`);
    return i;
  };
}

/**
 * `text` as nodes with each span (`{start, end, kinds}`, UTF-8 bytes) in a `<mark>` whose title names its kinds.
 * Overlapping spans (a distractor placed inside a changed word's span) are merged into one mark.
 */
export function markedNodes(text, spans) {
  const at = byteIndex(text);
  const sorted = spans.filter((s) => s.end > s.start).map((s) => ({ start: at(s.start), end: at(s.end), kinds: [...s.kinds] }))
    .sort((a, b) => a.start - b.start || a.end - b.end);
  const merged = [];
  for (const s of sorted) {
    const last = merged[merged.length - 1];
    if (last && s.start < last.end) {
      last.end = Math.max(last.end, s.end);
      for (const k of s.kinds) if (!last.kinds.includes(k)) last.kinds.push(k);
    } else {
      merged.push(s);
    }
  }
  const nodes = [];
  let pos = 0;
  for (const s of merged) {
    if (s.start > pos) nodes.push(document.createTextNode(text.slice(pos, s.start)));
    const mark = document.createElement('mark');
    mark.textContent = text.slice(s.start, s.end);
    mark.title = s.kinds.map(kindName).join('; ');
    mark.dataset.kind = s.kinds.join(' ');
    nodes.push(mark);
    pos = s.end;
  }
  if (pos < text.length) nodes.push(document.createTextNode(text.slice(pos)));
  return nodes;
}

const pct = (p) => `${(p * 100).toFixed(1)} %`;

export function initAttack(worker) {
  const el = {
    panel: $('attack'),
    form: $('attack-form'),
    model: $('atk-model'),
    task: $('atk-task'),
    recipe: $('atk-recipe'),
    textLabel: $('atk-text-label'),
    text: $('atk-text'),
    pairRow: $('atk-pair-row'),
    pairLabel: $('atk-text-pair-label'),
    textPair: $('atk-text-pair'),
    budget: $('atk-budget'),
    queries: $('atk-queries'),
    seed: $('atk-seed'),
    run: $('atk-run'),
    progress: $('atk-progress'),
    stage: $('atk-stage'),
    error: $('atk-error'),
    result: $('atk-result'),
    outcome: $('atk-outcome'),
    unchanged: $('atk-unchanged'),
    originalCaption: $('atk-original-caption'),
    original: $('atk-original'),
    attackedCaption: $('atk-attacked-caption'),
    attacked: $('atk-attacked'),
    predictions: $('atk-predictions'),
    changes: $('atk-changes'),
    stats: $('atk-stats'),
  };
  let ready = false;
  let running = false;
  let started = 0;
  let sent = null; // the request being answered

  // The recipe select: model-guided recipes and their random baselines, each with its level.
  el.recipe.replaceChildren(...RECIPES.map(({ group, recipes }) => {
    const g = document.createElement('optgroup');
    g.label = group;
    g.append(...recipes.map(([value, name, level]) => {
      const o = document.createElement('option');
      o.value = value;
      o.textContent = `${name} · ${level} level`;
      o.dataset.level = level;
      return o;
    }));
    return g;
  }));
  el.recipe.value = 'textbugger';

  const setState = (state) => {
    el.panel.dataset.state = state;
    running = state === 'running';
    el.run.disabled = running || !ready || el.model.options.length === 0;
    el.result.setAttribute('aria-busy', String(running));
  };
  setState('loading');

  function syncTask() {
    const t = TASKS[el.task.value];
    el.pairRow.hidden = !t.pair;
    el.textLabel.textContent = t.pair ? `${t.pair[0]} (kept as it is)` : 'Text';
    if (t.pair) {
      el.pairLabel.textContent = `${t.pair[1]} (the text the attack edits)`;
      if (!el.textPair.value) [el.text.value, el.textPair.value] = PAIR_EXAMPLES[el.task.value];
    }
  }
  el.task.addEventListener('change', syncTask);
  syncTask();

  /** The request, or a readable reason why it cannot be sent. */
  function request() {
    const task = el.task.value;
    const t = TASKS[task];
    if (!t) throw new Error(`unknown task ${task}`);
    const text = el.text.value;
    const pair = t.pair ? el.textPair.value : '';
    if (!text.trim()) throw new Error(t.pair ? `${t.name} compares two texts: the ${t.pair[0].toLowerCase()} is empty` : 'The text is empty: type a text to attack.');
    if (t.pair && !pair.trim()) throw new Error(`${t.name} compares two texts: fill in the ${t.pair[1].toLowerCase()} too (it is the one the attack edits)`);
    const budget = el.budget.value.trim() === '' ? NaN : Number(el.budget.value);
    if (!(budget >= 0 && budget <= 1)) throw new Error(`The budget must be a share of the words from 0 to 1 (0.25 = a quarter); got ${JSON.stringify(el.budget.value)}`);
    const maxQueries = el.queries.value.trim() === '' ? NaN : Number(el.queries.value);
    if (!(Number.isInteger(maxQueries) && maxQueries >= 1 && maxQueries <= 1_000_000)) {
      throw new Error(`Max queries must be a whole number from 1 to 1000000; got ${JSON.stringify(el.queries.value)}`);
    }
    const seed = el.seed.value.trim() === '' ? NaN : Number(el.seed.value);
    if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new Error(`The seed must be a whole number from 0 to 2^53 − 1; got ${JSON.stringify(el.seed.value)}`);
    if (!el.model.value) throw new Error('No bundled model is loaded, so there is nothing to attack.');
    return { type: 'attack', folder: el.model.value, task, text, textPair: t.pair ? pair : null, recipe: el.recipe.value, seed, budget, maxQueries };
  }

  function start() {
    if (!ready || running) return;
    el.error.textContent = '';
    let msg;
    try {
      msg = request();
    } catch (err) {
      fail(err.message, '');
      return;
    }
    setState('running');
    started = performance.now();
    el.progress.removeAttribute('value'); // indeterminate: the core reports no steps
    const modelName = el.model.selectedOptions[0]?.textContent ?? msg.folder;
    el.stage.textContent = `attacking with ${msg.recipe} against ${modelName}…`;
    sent = msg;
    worker.postMessage(msg);
  }

  /** Shows why nothing (more) can be shown; an earlier result is hidden, not left to be mistaken for this one. */
  function fail(message, stage = 'failed') {
    el.error.textContent = message;
    el.stage.textContent = stage;
    el.progress.value = 0;
    el.result.hidden = true;
    el.panel.dataset.finished = String(Number(el.panel.dataset.finished ?? 0) + 1);
    setState('failed');
  }

  function render(r) {
    const rec = r.record;
    const names = r.label_names;
    const name = (label) => names[label] ?? `class ${label}`;
    const pair = rec.segment === 'second';
    const t = TASKS[sent.task];
    el.panel.dataset.outcome = rec.outcome;

    const verdict = {
      succeeded: `Succeeded: ${r.architecture} now predicts ${name(rec.after.prediction)} instead of ${name(rec.before.prediction)}.`,
      failed: `Failed: ${r.architecture} still predicts ${name(rec.after.prediction)} (the budgets ran out or no change helped).`,
      skipped: `Skipped: the model's prediction on the unchanged text is not the label attacked, so nothing was changed.`,
    }[rec.outcome] ?? `Outcome: ${rec.outcome}`;
    el.outcome.textContent = verdict;
    el.outcome.className = `outcome ${rec.outcome}`;

    // The edited segment side by side, each change marked; for a pair the kept first text above.
    const segOriginal = pair ? rec.original.b : rec.original.a;
    const segAttacked = pair ? rec.perturbed.b : rec.perturbed.a;
    el.unchanged.hidden = !pair;
    el.unchanged.textContent = pair ? `${t?.pair?.[0] ?? 'First text'} (not edited): ${rec.original.a}` : '';
    const what = pair ? (t?.pair?.[1] ?? 'Second text') : 'Text';
    el.originalCaption.textContent = `${what}, original`;
    el.attackedCaption.textContent = `${what}, attacked`;
    el.original.replaceChildren(...markedNodes(segOriginal, rec.changes.map((c) => ({ ...c.original, kinds: [c.kind] }))));
    el.attacked.replaceChildren(...markedNodes(segAttacked, rec.changes.map((c) => ({ ...c.new, kinds: [c.kind] }))));

    // Predictions before and after.
    const body = el.predictions.tBodies[0];
    body.replaceChildren();
    for (const [when, v] of [['before', rec.before], ['after', rec.after]]) {
      const row = body.insertRow();
      row.dataset.when = when;
      row.dataset.label = name(v.prediction);
      row.dataset.confidence = String(v.probs[v.prediction]);
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = when === 'before' ? 'Before (original)' : 'After (attacked)';
      row.append(th);
      row.insertCell().textContent = name(v.prediction);
      const conf = row.insertCell();
      const meter = document.createElement('meter');
      meter.min = 0;
      meter.max = 1;
      meter.value = v.probs[v.prediction];
      meter.setAttribute('aria-hidden', 'true');
      const label = document.createElement('span');
      label.textContent = pct(v.probs[v.prediction]);
      conf.append(meter, ' ', label);
      row.insertCell().textContent = v.probs.map((p, i) => `${name(i)} ${pct(p)}`).join(' · ');
    }

    // The changes as a list (what the marks' titles say, readable without a pointer).
    el.changes.replaceChildren(...rec.changes.map((c) => {
      const li = document.createElement('li');
      li.dataset.kind = c.kind;
      const before = document.createElement('q');
      before.textContent = c.before;
      const after = document.createElement('q');
      after.textContent = c.after;
      if (c.before === '') li.append('added ', after, ` — ${kindName(c.kind)}`);
      else li.append(before, ' → ', after, ` — ${kindName(c.kind)}`);
      return li;
    }));
    if (rec.changes.length === 0) {
      const li = document.createElement('li');
      li.textContent = 'no change';
      el.changes.append(li);
    }

    el.stats.textContent = `${rec.words_changed} of ${rec.words} words changed · ${rec.queries} model queries · ${r.ms.toFixed(0)} ms · ` +
      `${r.recipe}, budget ${sent.budget}, max queries ${sent.maxQueries}, seed ${sent.seed}`;
    el.result.dataset.wordsChanged = String(rec.words_changed);
    el.result.dataset.words = String(rec.words);
    el.result.dataset.queries = String(rec.queries);
    el.result.dataset.ms = String(r.ms);
    el.result.hidden = false;
    // Test hook (tests/e2e): the last report, record included.
    window.trilemmaAttack = r;
  }

  el.form.addEventListener('submit', (e) => {
    e.preventDefault();
    start();
  });

  return {
    /** The worker started: offer the models that loaded. */
    ready(report) {
      const loaded = report.models.filter((m) => m.architecture !== null);
      el.model.replaceChildren(...loaded.map((m) => {
        const o = document.createElement('option');
        o.value = m.folder;
        o.textContent = m.architecture;
        return o;
      }));
      ready = true;
      if (loaded.length === 0) el.error.textContent = 'No bundled model loaded, so there is nothing to attack.';
      if (el.panel.dataset.state === 'loading') setState('idle');
    },
    /** The worker failed: nothing can run. */
    unavailable() {
      ready = false;
      if (running) {
        fail('The worker stopped, so the attack did not finish.');
      } else {
        setState(el.panel.dataset.state);
      }
    },
    onMessage(msg) {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      if (msg.type === 'attack-result') {
        try {
          render(msg.report);
          el.stage.textContent = `${msg.report.record.outcome} · done in ${seconds} s`; // read out (aria-live)
          el.progress.value = 1;
          el.panel.dataset.finished = String(Number(el.panel.dataset.finished ?? 0) + 1);
          setState('done');
        } catch (err) {
          fail(`The attack result could not be shown: ${err?.message ?? err}`);
        }
      } else if (msg.type === 'attack-error') {
        fail(msg.message);
      }
    },
  };
}
