/**
 * Email templates (services/notifications/templates.ts): each renders subject, HTML and text from
 * its data; HTML escapes every value; links are http(s) only; bad data names its fields.
 */
import { AppError } from "../../shared/errors";
import { EMAIL_TEMPLATES, type EmailData, type EmailTemplate } from "../../shared/contracts";
import { escapeHtml, parseEmailData, renderEmail, safeUrl } from "../../services/notifications/templates";
import { isSingleAddress } from "../../services/notifications/mailer";

const URL_WITH_TOKEN = "https://cms.example.com/verify?token=abc123&next=%2Fdisplays";

const SAMPLES: EmailData = {
	verify: { name: "Ada Lovelace", url: URL_WITH_TOKEN },
	reset: { name: "Ada Lovelace", url: "https://cms.example.com/reset?token=r3s3t", expiresInMinutes: 60 },
	invitation: {
		inviterName: "Grace Hopper",
		tenantName: "Acme Cinemas",
		role: "editor",
		url: "https://cms.example.com/invitations/accept?token=inv1t3",
		expiresAt: "2026-12-01T09:30:00.000Z"
	}
};

function render<T extends EmailTemplate>(template: T, data: Partial<EmailData[T]> = {}) {
	return renderEmail(template, { ...SAMPLES[template], ...data } as EmailData[T]);
}

function validationFields(fn: () => unknown): string[] {
	try {
		fn();
	} catch (err) {
		expect(err).toBeInstanceOf(AppError);
		expect(err).toMatchObject({ type: "VALIDATION_ERROR", code: 422 });
		return ((err as AppError).data as Array<{ field: string }>).map(f => f.field).sort();
	}
	throw new Error("expected a validation error");
}

describe("email templates", () => {
	it("verify: subject, greeting and link in HTML and text", () => {
		const mail = render("verify");
		expect(mail.subject).toBe("Verify your email address for Marquee");
		expect(mail.html).toContain("Hi Ada Lovelace,");
		expect(mail.html).toContain(`href="${escapeHtml(URL_WITH_TOKEN)}"`);
		expect(mail.html).toContain("Marquee");
		expect(mail.text).toContain("Hi Ada Lovelace,");
		expect(mail.text).toContain(URL_WITH_TOKEN);
		expect(mail.text).not.toMatch(/<[a-z]/i);
	});

	it("reset: validity in words, link in both parts", () => {
		const mail = render("reset");
		expect(mail.subject).toBe("Reset your Marquee password");
		expect(mail.html).toContain("valid for 1 hour");
		expect(mail.text).toContain("valid for 1 hour");
		expect(mail.text).toContain(SAMPLES.reset.url);
		expect(mail.html).toContain(`href="${SAMPLES.reset.url}"`);
		expect(render("reset", { expiresInMinutes: 30 }).text).toContain("valid for 30 minutes");
		expect(render("reset", { expiresInMinutes: 2880 }).text).toContain("valid for 2 days");
	});

	it("invitation: inviter, organisation, role and expiry", () => {
		const mail = render("invitation");
		// Names chosen by the inviter never reach the subject.
		expect(mail.subject).toBe("You are invited to join an organisation on Marquee");
		for (const part of [mail.html, mail.text]) {
			expect(part).toContain("“Grace Hopper” has invited you to join the organisation “Acme Cinemas” on Marquee as an editor.");
			expect(part).toContain("1 December 2026");
			expect(part).toContain("09:30 UTC");
		}
		expect(mail.text).toContain(SAMPLES.invitation.url);
		expect(mail.html).toContain(`href="${SAMPLES.invitation.url}"`);
		expect(render("invitation", { role: "viewer" }).text).toContain("as a viewer.");
	});

	it("renders every template as a complete HTML document with inline styles only", () => {
		for (const template of EMAIL_TEMPLATES) {
			const { html } = render(template);
			expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
			expect(html).toContain("</html>");
			expect(html).not.toMatch(/<style|<script|<link/i);
		}
	});

	it("escapes every interpolated value in the HTML", () => {
		const evil = `<script>alert("x")</script> & 'co'`;
		const escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;";
		const verify = render("verify", { name: evil });
		expect(verify.html).not.toContain("<script>");
		expect(verify.html).toContain(escaped);
		expect(verify.text).toContain(evil);

		const invitation = render("invitation", { inviterName: evil, tenantName: `<img src=x onerror=alert(1)>` });
		expect(invitation.html).not.toContain("<script>");
		expect(invitation.html).not.toContain("<img");
		expect(invitation.html).toContain("&lt;img src=x onerror=alert(1)&gt;");
		// the <title> carries the subject, which holds no names
		expect(invitation.html).toContain("<title>You are invited to join an organisation on Marquee</title>");

		const quoted = render("verify", { url: `https://example.com/a?b="onmouseover=alert(1)` });
		expect(quoted.html).not.toContain(`"onmouseover`);
	});

	it("refuses links that are not http(s)", () => {
		for (const url of ["javascript:alert(1)", "JavaScript:alert(1)", " javascript:alert(1)", "data:text/html,<b>x</b>", "vbscript:x", "/relative/path", "ftp://example.com/x", "not a url"]) {
			expect(validationFields(() => render("verify", { url }))).toEqual(["data.url"]);
		}
		expect(safeUrl("javascript:alert(1)")).toBeNull();
		expect(safeUrl("http://localhost:3000/verify?token=x")).toBe("http://localhost:3000/verify?token=x");
	});

	it("names every missing or bad field, per template", () => {
		expect(validationFields(() => parseEmailData("verify", {}))).toEqual(["data.name", "data.url"]);
		expect(validationFields(() => parseEmailData("reset", { name: "A", url: "https://x.example" }))).toEqual(["data.expiresInMinutes"]);
		expect(validationFields(() => parseEmailData("reset", { name: "A", url: "https://x.example", expiresInMinutes: 1.5 }))).toEqual([
			"data.expiresInMinutes"
		]);
		expect(validationFields(() => parseEmailData("invitation", { url: "https://x.example" }))).toEqual([
			"data.expiresAt",
			"data.inviterName",
			"data.role",
			"data.tenantName"
		]);
		expect(
			validationFields(() => parseEmailData("invitation", { ...SAMPLES.invitation, role: "superuser", expiresAt: "soon", tenantName: "   " }))
		).toEqual(["data.expiresAt", "data.role", "data.tenantName"]);
		expect(validationFields(() => parseEmailData("verify", { name: 42, url: "https://x.example" }))).toEqual(["data.name"]);
		expect(validationFields(() => parseEmailData("verify", null))).toEqual(["data"]);
		expect(validationFields(() => parseEmailData("nope" as EmailTemplate, {}))).toEqual(["template"]);
	});

	it("never echoes a rejected value (a link carries a token)", () => {
		try {
			parseEmailData("verify", { name: "A", url: "javascript:steal('secret-token')" });
			throw new Error("expected a validation error");
		} catch (err) {
			expect(JSON.stringify((err as AppError).data)).not.toContain("secret-token");
			expect((err as AppError).message).not.toContain("secret-token");
		}
	});

	it("drops unknown fields and keeps names on one line (no header injection in the subject)", () => {
		const data = parseEmailData("verify", { name: "Ada", url: "https://x.example/v", tenantId: "t-1" });
		expect(data).toEqual({ name: "Ada", url: "https://x.example/v" });

		const mail = render("invitation", { inviterName: "Eve\r\nBcc: victim@example.com", tenantName: "Acme\u202e\n" });
		expect(mail.subject).toBe("You are invited to join an organisation on Marquee");
		expect(mail.text).toContain("“Eve Bcc: victim@example.com” has invited you to join the organisation “Acme”");
		expect(mail.text).not.toContain("\u202e");
	});

	it("accepts only one plain recipient address", () => {
		expect(isSingleAddress("ada@example.com")).toBe(true);
		expect(isSingleAddress("ada+signage@mail.example.co.uk")).toBe(true);
		for (const bad of ["ada@example.com,eve@evil.example", `"a,b"@example.com`, "Ada <ada@example.com>", "ada@example.com\r\nBcc: x@y.z", "ada@localhost", "ada"]) {
			expect(isSingleAddress(bad)).toBe(false);
		}
	});
});
