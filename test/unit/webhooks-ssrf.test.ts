/**
 * The SSRF guard: which addresses are not the public internet (IPv4, IPv6 and IPv4 inside IPv6),
 * which URLs are webhook destinations at all, refusal on any resolved address, and the pinned
 * lookup that connects to the checked addresses only.
 */
import type { LookupOptions } from "node:dns";
import { classifyAddress, DestinationError, parseDestination, pinnedLookup, resolveDestination, systemResolve, type Resolve } from "../../shared/ssrf";

const CLASSES: Array<[string, string | null]> = [
	["127.0.0.1", "loopback"],
	["127.255.255.254", "loopback"],
	["10.0.0.1", "private"],
	["10.255.255.255", "private"],
	["172.16.0.1", "private"],
	["172.31.255.255", "private"],
	["172.32.0.1", null],
	["172.15.255.255", null],
	["192.168.1.10", "private"],
	["100.64.0.1", "carrier-grade NAT"],
	["100.127.255.255", "carrier-grade NAT"],
	["100.128.0.1", null],
	["169.254.169.254", "link-local"],
	["169.254.0.1", "link-local"],
	["0.0.0.0", "unspecified"],
	["0.1.2.3", "unspecified"],
	["224.0.0.1", "multicast"],
	["239.255.255.250", "multicast"],
	["255.255.255.255", "reserved"],
	["198.18.0.1", "reserved"],
	["8.8.8.8", null],
	["93.184.216.34", null],
	["1.1.1.1", null],
	["::1", "loopback"],
	["::", "unspecified"],
	["fc00::1", "private"],
	["fd12:3456:789a::1", "private"],
	["fd00:ec2::254", "private"],
	["fe80::1", "link-local"],
	["fe80::1%eth0", "link-local"],
	["febf:ffff::1", "link-local"],
	["fec0::1", "private"],
	["ff02::1", "multicast"],
	["::ffff:127.0.0.1", "loopback"],
	["::ffff:7f00:1", "loopback"],
	["::ffff:169.254.169.254", "link-local"],
	["::ffff:a00:1", "private"],
	["::ffff:192.168.0.1", "private"],
	["::ffff:8.8.8.8", null],
	["::127.0.0.1", "loopback"],
	["64:ff9b::10.0.0.1", "private"],
	["64:ff9b::8.8.8.8", null],
	["2002:a00:1::1", "private"],
	["2002:808:808::1", null],
	["[::1]", "loopback"],
	["2606:4700:4700::1111", null],
	["2001:4860:4860::8888", null],
	["2001:db8::1", "reserved"],
	["not-an-address", "invalid"],
	["1.2.3", "invalid"],
	["::ffff:1.2.3.4.5", "invalid"]
];

/** A resolver from a fixed table; unknown names fail like NXDOMAIN. */
function table(entries: Record<string, string[]>): Resolve {
	return async hostname => {
		const found = entries[hostname];
		if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
		return found.map(address => ({ address, family: address.includes(":") ? 6 : 4 }));
	};
}

async function refusal(raw: string, resolve: Resolve, allowPrivate = false): Promise<string> {
	try {
		await resolveDestination(parseDestination(raw), { allowPrivate, resolve, timeoutMs: 1000 });
		return "allowed";
	} catch (err) {
		expect(err).toBeInstanceOf(DestinationError);
		return `${(err as DestinationError).kind}: ${(err as DestinationError).message}`;
	}
}

describe("SSRF guard", () => {
	it.each(CLASSES)("%s is %s", (address, expected) => {
		expect(classifyAddress(address)).toBe(expected);
	});

	it("takes only absolute http and https URLs", () => {
		for (const raw of ["ftp://example.com/x", "javascript:alert(1)", "file:///etc/passwd", "gopher://example.com", "example.com/hook", "not a url", "http://"]) {
			expect(() => parseDestination(raw)).toThrow(DestinationError);
		}
		expect(parseDestination("https://hooks.example.com/a?b=1").hostname).toBe("hooks.example.com");
		expect(parseDestination("http://[::1]:8080/x").hostname).toBe("[::1]");
	});

	it("refuses IP literals in every spelling the URL parser accepts", async () => {
		const never: Resolve = () => Promise.reject(new Error("IP literals are not resolved"));
		const cases: Array<[string, string]> = [
			["http://127.0.0.1/hook", "refused: must not be a loopback address"],
			["http://127.1/hook", "refused: must not be a loopback address"],
			["http://0x7f000001/hook", "refused: must not be a loopback address"],
			["http://2130706433/hook", "refused: must not be a loopback address"],
			["http://017700000001/hook", "refused: must not be a loopback address"],
			["http://10.1.2.3:8080/hook", "refused: must not be a private address"],
			["http://169.254.169.254/latest/meta-data/", "refused: must not be a link-local address"],
			["http://0.0.0.0/", "refused: must not be an unspecified address"],
			["http://[::1]/", "refused: must not be a loopback address"],
			["http://[::ffff:127.0.0.1]/", "refused: must not be a loopback address"],
			["http://[::ffff:a9fe:a9fe]/", "refused: must not be a link-local address"],
			["http://[fd00::1]/", "refused: must not be a private address"],
			["https://93.184.216.34/hook", "allowed"],
			["https://[2606:4700:4700::1111]/hook", "allowed"]
		];
		const answers: Array<[string, string]> = [];
		for (const [raw] of cases) answers.push([raw, await refusal(raw, never)]);
		expect(answers).toEqual(cases);
	});

	it("refuses a name when any of its addresses is not public", async () => {
		const resolve = table({
			"public.test": ["93.184.216.34", "2606:4700:4700::1111"],
			"mixed.test": ["93.184.216.34", "10.0.0.5"],
			"metadata.test": ["169.254.169.254"],
			"mapped.test": ["::ffff:127.0.0.1"]
		});
		expect(await refusal("https://public.test/hook", resolve)).toBe("allowed");
		expect(await refusal("https://mixed.test/hook", resolve)).toBe("refused: must not resolve to a private address");
		expect(await refusal("http://metadata.test/", resolve)).toBe("refused: must not resolve to a link-local address");
		expect(await refusal("http://mapped.test/", resolve)).toBe("refused: must not resolve to a loopback address");
		expect(await refusal("http://nowhere.test/", resolve)).toBe("unresolved: nowhere.test does not resolve (getaddrinfo ENOTFOUND nowhere.test)");
	});

	it("refuses localhost through the operating system's resolver", async () => {
		expect(await refusal("http://localhost:8080/hook", systemResolve)).toMatch(/^refused: must not resolve to a loopback address$/);
	});

	it("allows everything when private destinations are allowed, and still answers the addresses", async () => {
		const resolve = table({ "inside.test": ["10.0.0.7"] });
		expect(await refusal("http://inside.test/", resolve, true)).toBe("allowed");
		expect(await resolveDestination(parseDestination("http://inside.test/"), { allowPrivate: true, resolve, timeoutMs: 1000 })).toEqual([{ address: "10.0.0.7", family: 4 }]);
	});

	it("treats a resolver that does not answer as no address", async () => {
		const silent: Resolve = () => new Promise(() => undefined);
		const err = await resolveDestination(parseDestination("http://slow.test/"), { allowPrivate: false, resolve: silent, timeoutMs: 20 }).catch((e: unknown) => e);
		expect(err).toBeInstanceOf(DestinationError);
		expect((err as DestinationError).kind).toBe("unresolved");
		expect((err as DestinationError).message).toBe("slow.test does not resolve (no answer within 20 ms)");
	});

	it("the pinned lookup answers the checked addresses in both call forms", () => {
		const lookup = pinnedLookup([
			{ address: "93.184.216.34", family: 4 },
			{ address: "2606:4700:4700::1111", family: 6 }
		]);
		const call = (options: LookupOptions) =>
			new Promise<unknown[]>(resolve => (lookup as unknown as (h: string, o: LookupOptions, cb: (...args: unknown[]) => void) => void)("rebind.test", options, (...args) => resolve(args)));
		return Promise.all([
			expect(call({ all: true })).resolves.toEqual([
				null,
				[
					{ address: "93.184.216.34", family: 4 },
					{ address: "2606:4700:4700::1111", family: 6 }
				]
			]),
			expect(call({})).resolves.toEqual([null, "93.184.216.34", 4]),
			expect(call({ family: 6 })).resolves.toEqual([null, "2606:4700:4700::1111", 6]),
			expect(call({ family: 6, all: true })).resolves.toEqual([null, [{ address: "2606:4700:4700::1111", family: 6 }]])
		]);
	});
});
