/**
 * The real platform in one test process (gateway, auth, tenants, notifications, devices, media,
 * scheduling, billing, analytics on chDB) and the steps
 * every flow test needs: sign up, sign in, read the embedded mailbox.
 */
import fs from "node:fs";
import path from "node:path";
import type { GlobalCollection } from "../../mixins/db.mixin";
import AnalyticsService from "../../services/analytics.service";
import AuthService from "../../services/auth.service";
import DevicesService from "../../services/devices.service";
import MediaService from "../../services/media.service";
import BillingService from "../../services/billing.service";
import NotificationsService from "../../services/notifications.service";
import type { EmailDoc } from "../../services/notifications/documents";
import SchedulingService from "../../services/scheduling.service";
import TenantsService from "../../services/tenants.service";
import type { AnyServiceSchema } from "../../server";
import { request, startGateway, tempDir, type TestGateway } from "./platform";

export const PLATFORM_SERVICES: AnyServiceSchema[] = [AuthService, TenantsService, NotificationsService, DevicesService, MediaService, SchedulingService, BillingService, AnalyticsService];

export interface Platform extends TestGateway {
	dataDir: string;
	api(path: string): string;
}

/**
 * The gateway with PLATFORM_SERVICES plus `extra`. A service of `extra` named like a platform
 * service replaces it (e.g. devices with a shorter sweep interval).
 */
export async function startTestPlatform(env: Record<string, string> = {}, extra: AnyServiceSchema[] = []): Promise<Platform> {
	const dataDir = tempDir();
	const replaced = new Set(extra.map(s => s.name));
	const services = [...PLATFORM_SERVICES.filter(s => !replaced.has(s.name)), ...extra];
	// One proxy hop is trusted so tests can act from distinct client addresses (X-Forwarded-For).
	const gw = await startGateway(services, { DATA_DIR: dataDir, RATE_LIMIT_PER_MINUTE: "100000", TRUST_PROXY_HOPS: "1", ...env });
	return { ...gw, dataDir, api: (p: string) => `${gw.url}/api/v1${p}` };
}

export interface Session {
	user: { id: string; email: string; name: string; emailVerified: boolean; createdAt: string };
	tenant: { id: string; name: string; slug: string; plan: string; createdAt: string };
	role: string;
	accessToken: string;
	refreshToken: string;
	expiresIn: number;
}

let counter = 0;

/** A unique, policy-compliant account. */
export function newAccount(label = "user") {
	counter += 1;
	return {
		email: `${label}-${process.pid}-${counter}@example.com`,
		password: `Tr0ub4dor&3-${label}-${counter}-horse`,
		name: `${label[0].toUpperCase()}${label.slice(1)} Tester`,
		organizationName: `${label} org ${counter}`
	};
}

export function bearer(token: string): Record<string, string> {
	return { Authorization: `Bearer ${token}` };
}

/** A fresh client address per call, so per-address sign-up limits do not pile up across tests. */
export function someClient(): Record<string, string> {
	counter += 1;
	return { "X-Forwarded-For": `10.${(counter >> 16) & 255}.${(counter >> 8) & 255}.${counter & 255}` };
}

export async function register(p: Platform, account = newAccount()): Promise<Session & { password: string }> {
	const res = await request<Session>(p.api("/auth/register"), { method: "POST", json: account, headers: someClient() });
	if (res.status !== 201) throw new Error(`register answered ${res.status}: ${res.text}`);
	return { ...res.body, password: account.password };
}

export async function login(p: Platform, email: string, password: string, headers: Record<string, string> = {}): Promise<Session> {
	const res = await request<Session>(p.api("/auth/login"), { method: "POST", json: { email, password }, headers });
	if (res.status !== 200) throw new Error(`login answered ${res.status}: ${res.text}`);
	return res.body;
}

/** Messages written to DATA_DIR/mail for `to`, newest last, decoded enough to find links. */
export function mailbox(p: Platform, to: string): string[] {
	const dir = path.join(p.dataDir, "mail");
	if (!fs.existsSync(dir)) return [];
	return fs
		.readdirSync(dir)
		.sort()
		.map(file => fs.readFileSync(path.join(dir, file), "utf8"))
		.map(raw => raw.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))))
		.filter(mail => new RegExp(`^To: .*${to.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`, "mi").test(mail));
}

/** The token of the newest link to `page` (e.g. "verify-email") mailed to `to`; waits for the mail (it leaves through the outbox, after the request). */
export async function tokenFromMail(p: Platform, to: string, page: string): Promise<string> {
	for (let i = 0; i < 250; i++) {
		const mails = mailbox(p, to);
		for (const mail of mails.reverse()) {
			const match = new RegExp(`/${page}\\?token=([A-Za-z0-9_%-]+)`).exec(mail);
			if (match) return decodeURIComponent(match[1]);
		}
		await new Promise(resolve => setTimeout(resolve, 20));
	}
	throw new Error(`no ${page} link mailed to ${to}`);
}

/** The messages mailed to `to` once there are at least `count` (mail leaves through the outbox, after the request). */
export async function waitForMail(p: Platform, to: string, count: number): Promise<string[]> {
	for (let i = 0; i < 250; i++) {
		const mails = mailbox(p, to);
		if (mails.length >= count) return mails;
		await new Promise(resolve => setTimeout(resolve, 20));
	}
	throw new Error(`fewer than ${count} messages mailed to ${to}`);
}

/** Waits until the outbox holds no email still to send, so a mailbox read afterwards shows everything queued so far. */
export async function mailSettled(p: Platform): Promise<void> {
	const notifications = p.broker.getLocalService("notifications") as unknown as { db: { email_outbox: GlobalCollection<EmailDoc> } };
	for (let i = 0; i < 250; i++) {
		if ((await notifications.db.email_outbox.countDocs({ status: "queued" })) === 0) return;
		await new Promise(resolve => setTimeout(resolve, 20));
	}
	throw new Error("the outbox still holds queued emails");
}

/**
 * The whole pairing flow: a screen asks for a code, `session` (an admin) pairs it, and the
 * screen's next poll collects the device token.
 */
export async function pairDisplay<D extends { id: string } = { id: string }>(
	p: Platform,
	session: { accessToken: string },
	fields: Record<string, unknown> = {}
): Promise<{ display: D; token: string }> {
	const pairing = await request<{ pairingId: string; code: string; pollSecret: string }>(p.api("/device/pairing"), { method: "POST", json: {}, headers: someClient() });
	if (pairing.status !== 201) throw new Error(`pairing request answered ${pairing.status}: ${pairing.text}`);
	const paired = await request<D>(p.api("/displays/pair"), { method: "POST", headers: bearer(session.accessToken), json: { code: pairing.body.code, name: "Lobby", ...fields } });
	if (paired.status !== 201) throw new Error(`pair answered ${paired.status}: ${paired.text}`);
	const polled = await request<{ deviceToken?: string }>(p.api(`/device/pairing/${pairing.body.pairingId}`), { headers: { "X-Pairing-Secret": pairing.body.pollSecret } });
	if (polled.status !== 200 || !polled.body.deviceToken) throw new Error(`pairing poll answered ${polled.status}: ${polled.text}`);
	return { display: paired.body, token: polled.body.deviceToken };
}
