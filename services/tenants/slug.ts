/**
 * Organisation slugs: short, lower-case, URL-safe names derived from what people call their
 * organisation, in any script. Latin letters lose their accents, Cyrillic and Greek are
 * transliterated, and letters of other scripts (東京サイネージ, عربي, 한국) are kept as they are —
 * a slug is a readable handle, and browsers show such paths as typed. A name with no letter or
 * digit at all (`!!!`, emoji) gets "org". Uniqueness is the store's job (a unique index), with
 * `withSuffix` for the next try.
 */
import { randomBytes } from "node:crypto";

export const SLUG_MAX = 48;

const CYRILLIC: Record<string, string> = {
	а: "a", б: "b", в: "v", г: "g", ґ: "g", д: "d", е: "e", ё: "yo", є: "ye", ж: "zh", з: "z", и: "i", і: "i", ї: "yi", й: "y",
	к: "k", л: "l", м: "m", н: "n", о: "o", п: "p", р: "r", с: "s", т: "t", у: "u", ф: "f", х: "kh", ц: "ts", ч: "ch", ш: "sh",
	щ: "shch", ъ: "", ы: "y", ь: "", э: "e", ю: "yu", я: "ya", ў: "u", ђ: "dj", ј: "j", љ: "lj", њ: "nj", ћ: "c", џ: "dz"
};

/** Latin letters without a decomposition. */
const LATIN: Record<string, string> = { ß: "ss", æ: "ae", ø: "o", œ: "oe", đ: "d", ł: "l", þ: "th", ð: "d", ı: "i" };

const GREEK: Record<string, string> = {
	α: "a", β: "v", γ: "g", δ: "d", ε: "e", ζ: "z", η: "i", θ: "th", ι: "i", κ: "k", λ: "l", μ: "m", ν: "n", ξ: "x", ο: "o",
	π: "p", ρ: "r", σ: "s", ς: "s", τ: "t", υ: "y", φ: "f", χ: "ch", ψ: "ps", ω: "o"
};

/**
 * One character (NFC) in slug form: accents off Latin and Greek letters (é → e, ή → η → i),
 * Cyrillic and Greek spelled in Latin (й → y, ж → zh); any other letter as it is (ジ stays ジ).
 */
function latinize(ch: string): string {
	const lower = ch.toLowerCase();
	const mapped = CYRILLIC[lower] ?? LATIN[lower];
	if (mapped !== undefined) return mapped;
	const base = lower.normalize("NFKD").replace(/\p{M}/gu, "");
	if (/^[\p{Script=Latin}\p{Script=Greek}\p{N}]+$/u.test(base)) return [...base].map(c => GREEK[c] ?? c).join("");
	return lower;
}

/** The slug of a name; "org" when nothing of it can be kept. */
export function slugify(name: string): string {
	const spelled = [...name.normalize("NFC")].map(latinize).join("");
	const slug = [...spelled.replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-+|-+$/g, "")].slice(0, SLUG_MAX).join("").replace(/-+$/, "");
	return slug || "org";
}

/** `base` with a random suffix of 6 lower-case letters and digits, within SLUG_MAX. */
export function withSuffix(base: string): string {
	const suffix = [...randomBytes(6)].map(b => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
	return `${[...base].slice(0, SLUG_MAX - 7).join("").replace(/-+$/, "")}-${suffix}`;
}
