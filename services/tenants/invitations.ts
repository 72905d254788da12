/**
 * Invitation tokens and their lifetime. The token goes out by email once and is kept only as its
 * sha256 (unique index `tokenHash`), so a leaked database hands out no working invitation; the
 * token carries 256 random bits, so a fast unsalted hash is enough and lets acceptance look the
 * invitation up by it. Only tenants makes and checks these tokens.
 */
import { randomToken } from "../../shared/secrets";
import type { InvitationDoc } from "./model";

/** How long an invitation stays valid (API.md: the email's link). */
export const INVITATION_TTL_MS = 7 * 24 * 3600_000;

/** `minv_` + 43 characters of base64url: 256 random bits, URL-safe for the email's link. */
export function newInvitationToken(): string {
	return randomToken("minv_");
}

/** The expiry of an invitation created at `now`, as stored and answered. */
export function invitationExpiry(now = Date.now()): string {
	return new Date(now + INVITATION_TTL_MS).toISOString();
}

/** Whether an invitation can still be accepted: not yet accepted and not expired. */
export function isAcceptable(invitation: Pick<InvitationDoc, "acceptedAt" | "expiresAt">, now = new Date()): boolean {
	return !invitation.acceptedAt && invitation.expiresAt > now.toISOString();
}
