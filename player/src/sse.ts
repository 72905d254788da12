/**
 * Server-sent events parsed from text chunks (the wire format of GET /api/v1/device/events).
 * EventSource cannot send an Authorization header, so the player reads the stream with fetch and
 * feeds the decoded text here. Pure: no DOM, unit-tested in Node.
 *
 * https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
 */

export interface SseEvent {
	event: string;
	data: string;
	id: string;
}

export class SseParser {
	private buffer = "";
	private event = "";
	private data: string[] = [];
	private id = "";
	/** The reconnection delay the server asked for (`retry:`), if it did. */
	retryMs: number | null = null;

	/** Feeds decoded text; returns the events it completed. */
	feed(chunk: string): SseEvent[] {
		this.buffer += chunk;
		const events: SseEvent[] = [];
		for (;;) {
			const match = /\r\n|\r|\n/.exec(this.buffer);
			// A lone "\r" at the end may be the first half of "\r\n": wait for more.
			if (!match || (match[0] === "\r" && match.index === this.buffer.length - 1)) break;
			const line = this.buffer.slice(0, match.index);
			this.buffer = this.buffer.slice(match.index + match[0].length);
			const event = this.line(line);
			if (event) events.push(event);
		}
		return events;
	}

	private line(line: string): SseEvent | null {
		if (line === "") {
			if (this.data.length === 0) {
				this.event = "";
				return null;
			}
			const event = { event: this.event || "message", data: this.data.join("\n"), id: this.id };
			this.event = "";
			this.data = [];
			return event;
		}
		if (line.startsWith(":")) return null;
		const colon = line.indexOf(":");
		const field = colon === -1 ? line : line.slice(0, colon);
		let value = colon === -1 ? "" : line.slice(colon + 1);
		if (value.startsWith(" ")) value = value.slice(1);
		if (field === "event") this.event = value;
		else if (field === "data") this.data.push(value);
		else if (field === "id" && !value.includes("\0")) this.id = value;
		else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
		return null;
	}
}
