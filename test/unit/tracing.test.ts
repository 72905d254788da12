/**
 * The Zipkin exporter of shared/tracing.ts on a broker built from the platform's own options
 * (TRACING_EXPORTER=zipkin), exporting to a local HTTP server standing in for the collector:
 * a failed span names what failed (its type, code) and never says what its message said (input
 * it quoted, a dependency's own words behind a 5xx); a trace id a client chose (X-Request-Id)
 * reaches the collector as 16 hex digits, as Zipkin requires; and what the exporter holds is
 * sent when the broker stops.
 */
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "../../moleculer.config";
import { loadConfig } from "../../shared/config";
import { Errors } from "../../shared/errors";
import { startZipkinCollector, type ZipkinCollector } from "../helpers/zipkin-collector";

const QUOTED = "quoted-input-5d2e91";
const DEPENDENCY_WORDS = "dependency-said-0b77c4 at 10.0.0.12";

describe("tracing: the Zipkin exporter", () => {
	let collector: ZipkinCollector;

	beforeAll(async () => {
		collector = await startZipkinCollector();
	});
	afterAll(() => collector.close());

	it("sends failures by type and code, never their messages; hashes a trace id that is not hex; sends what it holds when the broker stops", async () => {
		const broker = new ServiceBroker(brokerOptions(loadConfig({ NODE_ENV: "test", TRACING_EXPORTER: "zipkin", TRACING_ENDPOINT: collector.url }), { logger: false }));
		broker.createService({
			name: "probe",
			actions: {
				refuse: () => Promise.reject(Errors.conflict(`“${QUOTED}” is taken`, { name: QUOTED })),
				crash: () => Promise.reject(new Error(DEPENDENCY_WORDS)),
				fine: () => "ok"
			}
		});
		await broker.start();
		await expect(broker.call("probe.refuse")).rejects.toMatchObject({ code: 409 });
		await expect(broker.call("probe.crash")).rejects.toThrow(DEPENDENCY_WORDS);
		await broker.call("probe.fine", {}, { requestID: "chosen by a client!" });
		await broker.call("probe.fine", {}, { requestID: "0190a1b2-0000-7000-8000-000000000001" });
		// Nothing was sent yet (the exporter sends every 5 s): stopping sends it, and has by the time
		// it resolves (the process exits right after).
		await broker.stop();

		const spans = collector.spans();
		const byName = (name: string) => spans.filter(span => span.name === `action '${name}'`);
		expect(spans.map(span => span.name).sort()).toEqual(["action 'probe.crash'", "action 'probe.fine'", "action 'probe.fine'", "action 'probe.refuse'"]);
		expect(byName("probe.refuse")[0].tags).toMatchObject({ error: "CONFLICT", "error.name": "AppError", "error.message": "CONFLICT", "error.code": "409", "error.type": "CONFLICT" });
		expect(byName("probe.crash")[0].tags).toMatchObject({ error: "Error", "error.name": "Error", "error.message": "Error" });
		const all = JSON.stringify(spans);
		expect(all.includes(QUOTED)).toBe(false);
		expect(all.includes("dependency-said")).toBe(false);
		expect(all.includes("10.0.0.12")).toBe(false);
		// A UUID keeps its first 16 hex digits (as moleculer sends it); anything else is hashed to 16.
		const traceIds = byName("probe.fine").map(span => span.traceId);
		expect(traceIds).toContain("0190a1b200007000");
		expect(traceIds.filter(id => id !== "0190a1b200007000")).toEqual([expect.stringMatching(/^[0-9a-f]{16}$/)]);
	});
});
