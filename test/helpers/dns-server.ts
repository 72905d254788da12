/**
 * A DNS server for tests (UDP, on 127.0.0.1 and a free port) that answers TXT questions from a
 * table the test fills: enough for single sign-on's domain verification to ask a real resolver
 * (node's, through DNS_SERVERS) over the real protocol. Every other question gets NXDOMAIN.
 */
import dgram from "node:dgram";
import type { AddressInfo } from "node:net";

export interface TestDns {
	/** `127.0.0.1:<port>`, for DNS_SERVERS. */
	server: string;
	/** The TXT records of `name` (lower-case, no trailing dot); an empty list removes them. */
	setTxt(name: string, values: string[]): void;
	close(): Promise<void>;
}

const TXT = 16;

/** The question's name and type, and where the question ends; null when the message is not one question. */
function question(message: Buffer): { name: string; type: number; end: number } | null {
	if (message.length < 12 || message.readUInt16BE(4) !== 1) return null;
	const labels: string[] = [];
	let at = 12;
	while (at < message.length) {
		const length = message[at];
		if (length === 0) break;
		if (length > 63 || at + 1 + length > message.length) return null;
		labels.push(message.toString("latin1", at + 1, at + 1 + length));
		at += 1 + length;
	}
	if (at + 5 > message.length) return null;
	return { name: labels.join(".").toLowerCase(), type: message.readUInt16BE(at + 1), end: at + 5 };
}

function answer(message: Buffer, asked: { end: number }, values: string[] | undefined): Buffer {
	const header = Buffer.alloc(12);
	message.copy(header, 0, 0, 2); // id
	// QR, the question's RD, RA; NXDOMAIN when there is nothing to say.
	header.writeUInt16BE(0x8080 | (message.readUInt16BE(2) & 0x0100) | (values?.length ? 0 : 3), 2);
	header.writeUInt16BE(1, 4);
	header.writeUInt16BE(values?.length ?? 0, 6);
	const records = (values ?? []).map(value => {
		const text = Buffer.from(value, "utf8");
		const chunks: Buffer[] = [];
		for (let i = 0; i < text.length || i === 0; i += 255) {
			const part = text.subarray(i, i + 255);
			chunks.push(Buffer.from([part.length]), part);
			if (text.length === 0) break;
		}
		const rdata = Buffer.concat(chunks);
		const fixed = Buffer.alloc(12);
		fixed.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
		fixed.writeUInt16BE(TXT, 2);
		fixed.writeUInt16BE(1, 4); // IN
		fixed.writeUInt32BE(60, 6);
		fixed.writeUInt16BE(rdata.length, 10);
		return Buffer.concat([fixed, rdata]);
	});
	return Buffer.concat([header, message.subarray(12, asked.end), ...records]);
}

export async function startTestDns(): Promise<TestDns> {
	const records = new Map<string, string[]>();
	const socket = dgram.createSocket("udp4");
	socket.on("message", (message, from) => {
		const asked = question(message);
		if (!asked) return;
		const values = asked.type === TXT ? records.get(asked.name) : undefined;
		socket.send(answer(message, asked, values), from.port, from.address);
	});
	await new Promise<void>(resolve => socket.bind(0, "127.0.0.1", resolve));
	const { port } = socket.address() as AddressInfo;
	return {
		server: `127.0.0.1:${port}`,
		setTxt(name, values) {
			if (values.length) records.set(name.toLowerCase(), values);
			else records.delete(name.toLowerCase());
		},
		close: () => new Promise(resolve => socket.close(() => resolve()))
	};
}
