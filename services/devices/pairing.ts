/**
 * Pairing codes: 6 characters from an alphabet without look-alikes (no 0/O, 1/I/L, 5/S, 2/Z,
 * 8/B), drawn uniformly with crypto, shown on a screen and typed into the CMS.
 */
import { randomInt } from "node:crypto";

export const PAIRING_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679";
export const PAIRING_CODE_LENGTH = 6;

export const COMMAND_TYPES = ["reboot", "reload", "screenshot", "clear-cache"] as const;
export type CommandType = (typeof COMMAND_TYPES)[number];

export function pairingCode(): string {
	let code = "";
	for (let i = 0; i < PAIRING_CODE_LENGTH; i++) code += PAIRING_ALPHABET[randomInt(PAIRING_ALPHABET.length)];
	return code;
}

/** What an admin typed → the code, or null when it cannot be one (case, spaces and dashes forgiven). */
export function normalizePairingCode(input: string): string | null {
	const code = input.toUpperCase().replace(/[\s-]/g, "");
	if (code.length !== PAIRING_CODE_LENGTH) return null;
	for (const ch of code) if (!PAIRING_ALPHABET.includes(ch)) return null;
	return code;
}
