import { randomBytes } from "node:crypto";

/**
 * A UUID v7 (RFC 9562): 48-bit millisecond timestamp then random bits, so ids sort by creation
 * time. Ids are plain strings everywhere (NeDB and MongoDB alike).
 */
export function newId(now = Date.now()): string {
	const bytes = randomBytes(16);
	bytes.writeUIntBE(now, 0, 6);
	bytes[6] = (bytes[6] & 0x0f) | 0x70;
	bytes[8] = (bytes[8] & 0x3f) | 0x80;
	const hex = bytes.toString("hex");
	return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export function isId(value: unknown): value is string {
	return typeof value === "string" && ID.test(value);
}

/** fastest-validator rule for an id in params. */
export const ID_RULE = { type: "string", pattern: ID.source, messages: { stringPattern: "is not a valid id" } } as const;
