/**
 * Pairing: a screen asks for a code (a pairing request), shows it, and an admin types it into
 * the CMS. Codes are 6 characters from an alphabet without look-alikes (no 0/O, 1/I/L, 5/S, 2/Z,
 * 8/B), drawn uniformly with crypto. A request is live for 15 minutes while pending; once paired
 * it waits for its screen to collect the device token, once.
 */
import { randomInt } from "node:crypto";
import { randomToken } from "../../shared/secrets";
import type { Stored } from "../../mixins/db.mixin";

export const PAIRING_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679";
export const PAIRING_CODE_LENGTH = 6;
export const PAIRING_TTL_MS = 15 * 60_000;

/**
 * A pairing request. No tenant owns it until an admin pairs it (the screen has no credentials),
 * so the collection is global; only hashes of the code and the poll secret are kept.
 */
export interface PairingDoc extends Stored {
	codeHash: string;
	pollSecretHash: string;
	status: "pending" | "paired";
	expiresAt: string;
	hardwareId: string | null;
	model: string | null;
	resolution: string | null;
	/** Set when paired. */
	pairedTenantId?: string;
	displayId?: string;
	/** Set when the screen collected its token (which happens once). */
	tokenDeliveredAt?: string;
}

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

/** The secret a screen polls with: `mps_` and 256 random bits (base64url), shown to it once. */
export function pollSecret(): string {
	return randomToken("mps_");
}

/** A pending request whose code can still be typed in. */
export function isLivePairing(pairing: Pick<PairingDoc, "status" | "expiresAt">, now: Date): boolean {
	return pairing.status === "pending" && pairing.expiresAt > now.toISOString();
}

/** The display a paired request made, or null while it is pending. */
export function pairedDisplay(pairing: Pick<PairingDoc, "status" | "pairedTenantId" | "displayId">): { tenantId: string; displayId: string } | null {
	if (pairing.status !== "paired" || !pairing.pairedTenantId || !pairing.displayId) return null;
	return { tenantId: pairing.pairedTenantId, displayId: pairing.displayId };
}
