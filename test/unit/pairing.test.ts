import { normalizePairingCode, PAIRING_ALPHABET, PAIRING_CODE_LENGTH, pairingCode } from "../../services/devices/pairing";

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
