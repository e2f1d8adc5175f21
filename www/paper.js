// The paper view: each seed paper's claim (experiment::claims) as a card with the paper's finding, what we run and
// when we say it holds, and a button that runs its spec in the Experiment panel; when the run finishes the card shows
// our numbers with their 95% intervals and the verdict: holds / does not hold here / inconclusive. Everything is set
// with textContent.
import { paper_claims, claim_verdict } from './trilemma.js';
import { core } from './experiment.js';

const $ = (id) => document.getElementById(id);
const VERDICT = { holds: 'holds here', does_not_hold: 'does not hold here', inconclusive: 'inconclusive here (the interval allows both)' };
const num = (x) => (Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(3));

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function verdictTable(v) {
  const table = el('table');
  const cap = table.createCaption();
  cap.textContent = 'Our numbers (95% intervals, examples resampled as pairs)';
  const head = table.createTHead().insertRow();
  for (const h of ['measured', 'value', '95% interval', 'examples', 'claim expects', 'verdict']) {
    const th = el('th', h);
    th.scope = 'col';
    head.append(th);
  }
  const body = table.createTBody();
  for (const r of v.rows) {
    const tr = body.insertRow();
    tr.dataset.holds = r.holds;
    for (const [i, text] of [r.label, num(r.value), `[${num(r.ci95[0])}, ${num(r.ci95[1])}]`, String(r.n), r.expect, VERDICT[r.holds]].entries()) {
      const td = tr.insertCell();
      td.textContent = text;
      if (i === 0) td.className = 'l';
    }
  }
  return table;
}

export async function initPaper(experiment) {
  await core();
  const list = $('paper-claims');
  const claims = paper_claims();
  let busy = false;
  const buttons = [];
  for (const c of claims) {
    const card = el('article', null, 'claim');
    card.id = `claim-${c.id}`;
    card.dataset.claim = c.id;
    card.setAttribute('aria-labelledby', `claim-${c.id}-h`);
    const h = el('h3', c.paper);
    h.id = `claim-${c.id}-h`;
    const finding = el('p');
    finding.append(el('b', 'The paper: '), document.createTextNode(c.finding));
    const here = el('p');
    here.append(el('b', 'Here: '), document.createTextNode(c.here));
    const button = el('button', 'Run this claim');
    button.type = 'button';
    button.disabled = true;
    const out = el('div', null, 'claim-result');
    out.setAttribute('aria-live', 'polite');
    buttons.push(button);
    button.addEventListener('click', () => {
      if (busy) return;
      busy = true;
      buttons.forEach((b) => { b.disabled = true; });
      card.dataset.state = 'running';
      out.replaceChildren(el('p', 'running in the Experiment panel (its progress bar shows where it is)…', 'muted'));
      experiment.run(JSON.parse(c.spec), (json, error) => {
        busy = false;
        buttons.forEach((b) => { b.disabled = false; });
        if (error || !json) {
          card.dataset.state = 'failed';
          out.replaceChildren(el('p', `The run did not finish: ${error ?? 'cancelled'}`, 'check bad'));
          return;
        }
        try {
          const v = claim_verdict(c.id, json);
          card.dataset.state = 'done';
          card.dataset.holds = v.holds;
          out.replaceChildren(el('p', `The claim ${VERDICT[v.holds]}.`, v.holds === 'holds' ? 'check ok' : 'check bad'), verdictTable(v));
        } catch (err) {
          card.dataset.state = 'failed';
          out.replaceChildren(el('p', `No verdict: ${err?.message ?? err}`, 'check bad'));
        }
      });
    });
    card.append(h, finding, here, button, out);
    list.append(card);
  }
  return {
    ready() {
      if (!busy) buttons.forEach((b) => { b.disabled = false; });
    },
  };
}
