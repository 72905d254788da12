/**
 * A stand-in for a Zipkin collector: a local HTTP server that keeps the body of every POST
 * /api/v2/spans (a JSON array of spans) and answers 202, as Zipkin does.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ZipkinSpan {
	name: string;
	traceId: string;
	tags: Record<string, string>;
}

export interface ZipkinCollector {
	url: string;
	/** Every POST's body, in arrival order. */
	bodies: string[];
	spans(): ZipkinSpan[];
	close(): Promise<void>;
}

export async function startZipkinCollector(): Promise<ZipkinCollector> {
	const bodies: string[] = [];
	const server = http.createServer((req, res) => {
		let body = "";
		req.setEncoding("utf8");
		req.on("data", chunk => (body += chunk));
		req.on("end", () => {
			if (req.method === "POST" && req.url === "/api/v2/spans") bodies.push(body);
			res.statusCode = 202;
			res.end();
		});
	});
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	return {
		url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
		bodies,
		spans: () => bodies.flatMap(body => JSON.parse(body) as ZipkinSpan[]),
		close: () => new Promise(resolve => server.close(() => resolve()))
	};
}
