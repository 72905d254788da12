import { randomFillSync } from "node:crypto";

let lastMs = 0;
let sequence = 0;

/**
 * Random bytes drawn 4 KiB at a time (as Node's randomUUID does): one call into the CSPRNG per
 * 256 ids instead of two per id, which showed in the heartbeat's profile (a request id each).
 */
const POOL = Buffer.alloc(4096);
let poolOffset = POOL.length;

function randomInto(target: Buffer, length: number): void {
	if (poolOffset + length > POOL.length) {
		randomFillSync(POOL);
		poolOffset = 0;
	}
	POOL.copy(target, 0, poolOffset, poolOffset + length);
	poolOffset += length;
}

/**
 * A UUID v7 (RFC 9562): 48-bit millisecond timestamp, then a 12-bit counter (method 1 of §6.2)
 * so ids minted by one process sort in creation order even within a millisecond, then random
 * bits. Ids are plain strings everywhere (NeDB and MongoDB alike).
 */
export function newId(now = Date.now()): string {
	if (now > lastMs) {
		lastMs = now;
		// Start each millisecond low in the counter space, leaving room to count up.
		const two = Buffer.allocUnsafe(2);
		randomInto(two, 2);
		sequence = two.readUInt16BE(0) & 0x3ff;
	} else if (++sequence > 0xfff) {
		// Counter exhausted, or the clock went back: borrow the next millisecond.
		lastMs += 1;
		sequence = 0;
	}
	const bytes = Buffer.allocUnsafe(16);
	randomInto(bytes, 16);
	bytes.writeUIntBE(lastMs, 0, 6);
	bytes[6] = 0x70 | (sequence >> 8);
	bytes[7] = sequence & 0xff;
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
