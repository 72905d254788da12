/**
 * Webhook signatures: the Standard Webhooks scheme, checked against the specification's own test
 * vector and against the official `standardwebhooks` library a receiver would use.
 */
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { messageIdOf, newSecret, payloadOf, sign, signedHeaders } from "../../services/notifications/signing";

/** The test vector published with the Standard Webhooks specification. */
const VECTOR = {
	secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	msgId: "msg_p5jXN8AQM9LWM0D4loKWxJek",
	timestamp: 1614265330,
	body: '{"test": 2432232314}',
	signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
};

const BODY = '{"type":"display.offline","timestamp":"2026-03-01T12:00:00.000Z","data":{"displayId":"d-1"}}';

function verdict(secret: string, headers: Record<string, string>, body = BODY): string {
	try {
		new Webhook(secret).verify(body, headers);
		return "ok";
	} catch (err) {
		expect(err).toBeInstanceOf(WebhookVerificationError);
		return (err as Error).message;
	}
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

describe("webhook signing", () => {
	it("reproduces the Standard Webhooks specification's test vector", () => {
		expect(sign(VECTOR.secret, VECTOR.msgId, VECTOR.timestamp, VECTOR.body)).toBe(VECTOR.signature);
	});

	it("makes secrets of whsec_ and 32 random bytes in base64, a different one each time", () => {
		const secrets = Array.from({ length: 20 }, () => newSecret());
		for (const secret of secrets) {
			expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
			expect(Buffer.from(secret.slice("whsec_".length), "base64")).toHaveLength(32);
		}
		expect(new Set(secrets).size).toBe(20);
	});

	it("headers the official library accepts", () => {
		const secret = newSecret();
		const headers = signedHeaders([secret], "msg_abc", nowSeconds(), BODY);
		expect(Object.keys(headers).sort()).toEqual(["webhook-id", "webhook-signature", "webhook-timestamp"]);
		expect(headers["webhook-id"]).toBe("msg_abc");
		expect(headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
		expect(verdict(secret, headers)).toBe("ok");
	});

	it("a tampered body, a changed id or another secret fail the library's check", () => {
		const secret = newSecret();
		const headers = signedHeaders([secret], "msg_abc", nowSeconds(), BODY);
		expect(verdict(secret, headers, BODY.replace("d-1", "d-2"))).toBe("No matching signature found");
		expect(verdict(secret, { ...headers, "webhook-id": "msg_abd" })).toBe("No matching signature found");
		expect(verdict(newSecret(), headers)).toBe("No matching signature found");
	});

	it("an old timestamp fails the library's check, even correctly signed", () => {
		const secret = newSecret();
		const tenMinutesAgo = nowSeconds() - 600;
		expect(verdict(secret, signedHeaders([secret], "msg_abc", tenMinutesAgo, BODY))).toBe("Message timestamp too old");
		// A fresh timestamp on the old signature is no way around it.
		const old = signedHeaders([secret], "msg_abc", tenMinutesAgo, BODY);
		expect(verdict(secret, { ...old, "webhook-timestamp": String(nowSeconds()) })).toBe("No matching signature found");
	});

	it("after a rotation both secrets sign, space-separated, and a receiver with either accepts", () => {
		const current = newSecret();
		const previous = newSecret();
		const headers = signedHeaders([current, previous], "msg_abc", nowSeconds(), BODY);
		const parts = headers["webhook-signature"].split(" ");
		expect(parts).toHaveLength(2);
		expect(parts[0]).toBe(sign(current, "msg_abc", Number(headers["webhook-timestamp"]), BODY));
		expect(parts[1]).toBe(sign(previous, "msg_abc", Number(headers["webhook-timestamp"]), BODY));
		expect(verdict(current, headers)).toBe("ok");
		expect(verdict(previous, headers)).toBe("ok");
		expect(verdict(newSecret(), headers)).toBe("No matching signature found");
	});

	it("serializes the body as {type, timestamp, data} in that order", () => {
		expect(payloadOf({ data: { displayId: "d-1" }, timestamp: "2026-03-01T12:00:00.000Z", type: "display.offline" })).toBe(BODY);
		expect(messageIdOf("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")).toBe("msg_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
	});
});
