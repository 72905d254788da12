import { hashToken, safeEqual } from "../../shared/secrets";
import { isLivePairing, normalizePairingCode, PAIRING_ALPHABET, PAIRING_CODE_LENGTH, pairedDisplay, pairingCode, pollSecret } from "../../services/devices/pairing";

describe("pairing codes", () => {
	it("are 6 characters of an alphabet without look-alikes", () => {
		for (const ambiguous of ["0", "O", "1", "I", "L", "5", "S", "2", "Z", "8", "B"]) expect(PAIRING_ALPHABET).not.toContain(ambiguous);
		expect(new Set(PAIRING_ALPHABET).size).toBe(PAIRING_ALPHABET.length);
		for (let i = 0; i < 200; i++) {
			const code = pairingCode();
			expect(code).toHaveLength(PAIRING_CODE_LENGTH);
			for (const ch of code) expect(PAIRING_ALPHABET).toContain(ch);
		}
	});

	it("use every character of the alphabet (uniform draw)", () => {
		const seen = new Map<string, number>();
		for (let i = 0; i < 5000; i++) for (const ch of pairingCode()) seen.set(ch, (seen.get(ch) ?? 0) + 1);
		expect(seen.size).toBe(PAIRING_ALPHABET.length);
		const expected = (5000 * PAIRING_CODE_LENGTH) / PAIRING_ALPHABET.length;
		for (const count of seen.values()) expect(Math.abs(count - expected) / expected).toBeLessThan(0.25);
	});

	it("forgive case, spaces and dashes; refuse anything else", () => {
		expect(normalizePairingCode("ac3-d4e")).toBe("AC3D4E");
		expect(normalizePairingCode(" AC3 D4E ")).toBe("AC3D4E");
		expect(normalizePairingCode("AC3D4")).toBeNull();
		expect(normalizePairingCode("AC3D4E7")).toBeNull();
		expect(normalizePairingCode("AC0D4E")).toBeNull();
		expect(normalizePairingCode("AC$D4E")).toBeNull();
	});
});

describe("pairing requests", () => {
	const now = new Date("2026-11-22T10:00:00.000Z");

	it("are live while pending and before their expiry", () => {
		expect(isLivePairing({ status: "pending", expiresAt: "2026-11-22T10:15:00.000Z" }, now)).toBe(true);
		expect(isLivePairing({ status: "pending", expiresAt: now.toISOString() }, now)).toBe(false);
		expect(isLivePairing({ status: "paired", expiresAt: "2026-11-22T10:15:00.000Z" }, now)).toBe(false);
	});

	it("name their display once paired, and none before", () => {
		expect(pairedDisplay({ status: "paired", pairedTenantId: "t-1", displayId: "d-1" })).toEqual({ tenantId: "t-1", displayId: "d-1" });
		expect(pairedDisplay({ status: "pending" })).toBeNull();
		expect(pairedDisplay({ status: "paired", pairedTenantId: "t-1" })).toBeNull();
	});
});

describe("pairing secrets", () => {
	it("poll secrets are mps_ and 256 random bits, never repeated", () => {
		const secrets = new Set(Array.from({ length: 100 }, () => pollSecret()));
		expect(secrets.size).toBe(100);
		for (const secret of secrets) expect(secret).toMatch(/^mps_[A-Za-z0-9_-]{43}$/);
	});

	it("codes and poll secrets are stored as their sha256 hex digest (shared/secrets), and compared without regard to length", () => {
		expect(hashToken("AC3D4E")).toMatch(/^[0-9a-f]{64}$/);
		expect(hashToken("AC3D4E")).toBe("af8ff1d897b6127244917f0ad7f110c159af2a2c00bc32db73cfc64d3857b5b8");
		const stored = hashToken("mps_secret");
		expect(safeEqual(hashToken("mps_secret"), stored)).toBe(true);
		expect(safeEqual(hashToken("mps_other"), stored)).toBe(false);
		expect(safeEqual("", stored)).toBe(false);
		expect(safeEqual(undefined as unknown as string, stored)).toBe(false);
	});
});
