// Makes npm_tiktoken_gpt2.jsonl and npm_tiktoken_gpt2_decode.sha256 from the
// npm package "tiktoken" (a WASM build of tiktoken's Rust core, which ships
// the gpt2 ranks). Run: npm install tiktoken && node gen_npm_tiktoken.mjs
import { get_encoding } from "tiktoken";
import crypto from "crypto";
import fs from "fs";

const enc = get_encoding("gpt2");
const pools = [
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
  "0123456789", "٠١٢٣٤٥", "²³¼Ⅻⅻ",
  " \t\n\r\v\f\u00a0\u0085\u1680\u2000\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\ufeff",
  "'''''sdmtlvre", "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~",
  "éèàüßçñøåÆŒ", "日本語中文한국어ひらがなカタカナ", "🤖🎉👍🏽❤️‍🔥", "\u0301\u0308\u0327",
  "ʰʲˈ", "ℵא", "\u0000\u0001\u001f\u007f",
];
let rng = 12345;
const rand = (n) => { rng = (rng * 1103515245 + 12345) % 2147483648; return rng % n; };
const texts = ["", " ", "  ", "\n\n\n", "   a", "a   ", "I'm you're we'll they've he'd it's DON'T",
  "hello<|endoftext|>world", "<|endoftext|>", "<|endoftext|><|endoftext|>", "<|endoftext", "<|endoftext|>  \n",
  "x = 1_000_000.5e-3;\n\tif (a<=b) { return -1; }", "    indented\n        more\n", "a\u00a0b\u3000c \u2028 d"];
for (let i = 0; i < 300; i++) {
  const len = 1 + rand(40); let s = "";
  for (let j = 0; j < len; j++) { const p = [...pools[rand(pools.length)]]; s += p[rand(p.length)]; if (rand(10) == 0) s += " "; }
  if (rand(20) == 0) s += "<|endoftext|>";
  texts.push(s);
}
const lines = texts.map(t => JSON.stringify({ text: t, ids: Array.from(enc.encode(t, ["<|endoftext|>"])) }));
fs.writeFileSync("npm_tiktoken_gpt2.jsonl", lines.join("\n") + "\n");

// decode([id]) for every id, as UTF-8 with replacement (TextDecoder, like
// Python's errors="replace"), hashed as a 4-byte little-endian length + bytes each.
const td = new TextDecoder("utf-8", { fatal: false });
const h = crypto.createHash("sha256");
for (let id = 0; id < 50257; id++) {
  const b = Buffer.from(td.decode(enc.decode(new Uint32Array([id]))), "utf-8");
  const n = Buffer.alloc(4); n.writeUInt32LE(b.length);
  h.update(n); h.update(b);
}
fs.writeFileSync("npm_tiktoken_gpt2_decode.sha256", h.digest("hex") + "\n");
console.log(enc.name, texts.length);
