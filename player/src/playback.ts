/**
 * One loop of items in one box: the whole window (a manifest without a layout) or a layout's
 * zone (screen.ts). Items play in order and loop, letterboxed in the box (object-fit: contain).
 * Two stacked layers: while one shows an item, the next item is prepared in the other (image
 * decoded, video buffered, page loaded) and the layers swap, so there is never a white flash
 * between items.
 *
 * A new programme that still lists the item on screen lets it finish and goes on after it in the
 * new order; one that no longer lists it (content deleted, another playlist scheduled) replaces it
 * at once; one with the same etag changes nothing on screen. Every item shown produces one play
 * record (`onPlayed`), cut-short ones as incomplete.
 *
 * What is on screen goes to `mark` (the owner puts it in the DOM for tests and support staff),
 * and `data-content-id` is on the visible element.
 */
import { isReady, objectUrl } from "./content-cache.js";
import { isShowableUrl, nextPlayable, playRecord, webSandbox, type ManifestItem, type PlayRecord, type Programme } from "./model.js";
import { newId } from "./store.js";

/** How long an item may take to become showable before it is skipped. */
const PREPARE_TIMEOUT_MS = 10_000;
/** With nothing showable, how often to look again (downloads finish, validity windows open). */
const IDLE_RETRY_MS = 1_000;

interface Prepared {
	item: ManifestItem;
	index: number;
	element: HTMLElement;
}

interface OnScreen extends Prepared {
	startedAtMs: number;
	programme: Programme;
}

export interface PlaybackOptions {
	/** Now, by the server's clock (play records use it). */
	now(): number;
	onPlayed(play: PlayRecord): void;
	/** The content now on screen (null: nothing). */
	mark(contentId: string | null): void;
}

export class Playback {
	private programme: Programme | null = null;
	private current: OnScreen | null = null;
	private next: Prepared | null = null;
	private timer: ReturnType<typeof setTimeout> | null = null;
	/** Bumped by every advance: an older advance that finishes preparing late gives way. */
	private generation = 0;
	private readonly layers: [HTMLElement, HTMLElement];
	private front = 0;

	/** Fills `box` (its children are replaced by the two layers). */
	constructor(
		box: HTMLElement,
		private readonly options: PlaybackOptions
	) {
		const a = document.createElement("div");
		const b = document.createElement("div");
		a.className = b.className = "layer";
		box.replaceChildren(a, b);
		this.layers = [a, b];
	}

	/** The content on screen, for heartbeats. */
	get currentContentId(): string | null {
		return this.current?.item.contentId ?? null;
	}

	/** Plays `programme` from now on (see the file comment for what happens to the item on screen). */
	play(programme: Programme): void {
		const before = this.programme;
		if (before && before.etag === programme.etag) {
			// The same loop: it goes on untouched; only what its play records name may have changed.
			this.programme = { ...before, playlist: programme.playlist, schedule: programme.schedule };
			if (this.current) this.current = { ...this.current, programme: this.programme };
			return;
		}
		this.programme = programme;
		this.next = null;
		this.broken.clear();
		const current = this.current;
		if (current) {
			const at = programme.items.findIndex(i => i.contentId === current.item.contentId && i.sha256 === current.item.sha256 && i.url === current.item.url);
			if (at !== -1) {
				// Keep playing it; continue after its place in the new order.
				this.current = { ...current, index: at, programme };
				this.prepareNext();
				return;
			}
		}
		void this.advance();
	}

	/** Something became showable (a download finished): start if the box is idle. */
	kick(): void {
		if (!this.current && this.programme) void this.advance();
		else if (this.current && !this.next) this.prepareNext();
	}

	/** Stops and blanks the box (sign-out, power off, a zone gone); its last play is recorded. */
	stop(): void {
		this.finishCurrent();
		this.programme = null;
		this.next = null;
		this.clearTimer();
		this.generation++;
		for (const layer of this.layers) layer.replaceChildren();
		this.mark(null);
	}

	private clearTimer(): void {
		if (this.timer !== null) clearTimeout(this.timer);
		this.timer = null;
	}

	/**
	 * Shows the next showable item now: the one after the item on screen, or from `from`. An item
	 * that cannot be shown (broken file, a page that never loads) is skipped until the programme
	 * changes; with nothing showable the box is empty and looked at again every second.
	 */
	private async advance(from?: number): Promise<void> {
		const generation = ++this.generation;
		this.clearTimer();
		const programme = this.programme;
		if (!programme) return;
		const start = from ?? (this.current && this.current.programme.etag === programme.etag ? this.current.index + 1 : 0);
		const index = nextPlayable(programme.items, start, item => isReady(item) && !this.broken.has(item));
		if (index === -1) {
			this.showNothing();
			this.broken.clear();
			this.timer = setTimeout(() => void this.advance(), IDLE_RETRY_MS);
			return;
		}
		const next = this.next;
		this.next = null;
		const prepared = next && next.index === index && next.item === programme.items[index] ? next : await this.prepare(programme.items[index], index);
		if (generation !== this.generation) return;
		if (!prepared) {
			this.broken.add(programme.items[index]);
			return this.advance(index + 1);
		}
		// The programme may have been replaced by one with the same etag (new play-record refs) meanwhile.
		this.present(prepared, this.programme?.etag === programme.etag ? this.programme : programme);
	}

	/** Items of the current programme that failed to show. */
	private readonly broken = new Set<ManifestItem>();

	private present(prepared: Prepared, programme: Programme): void {
		this.finishCurrent();
		const back = this.layers[1 - this.front];
		const front = this.layers[this.front];
		const previous = Array.from(front.children);
		if (prepared.element.parentElement !== back) back.replaceChildren(prepared.element);
		back.classList.add("visible");
		front.classList.remove("visible");
		this.front = 1 - this.front;
		// The old element goes once the new one is on top (no frame without a picture).
		requestAnimationFrame(() => {
			for (const el of previous) if (el !== this.next?.element && el !== this.current?.element) el.remove();
		});
		this.current = { ...prepared, startedAtMs: this.options.now(), programme };
		this.mark(prepared.item.contentId);
		const { element, item } = prepared;
		if (element instanceof HTMLVideoElement) {
			element.currentTime = 0;
			element.addEventListener("ended", () => this.ended(prepared), { once: true });
			void element.play().catch(() => this.ended(prepared));
		}
		this.timer = setTimeout(() => this.ended(prepared), item.durationMs);
		this.prepareNext();
	}

	private ended(prepared: Prepared): void {
		if (this.current?.element !== prepared.element) return;
		void this.advance();
	}

	/** Prepares the item after the current one in the hidden layer. */
	private prepareNext(): void {
		const programme = this.programme;
		const current = this.current;
		if (!programme || !current) return;
		const index = nextPlayable(programme.items, current.index + 1, isReady);
		if (index === -1) return;
		const generation = this.generation;
		void this.prepare(programme.items[index], index).then(prepared => {
			if (prepared && generation === this.generation && this.programme?.items === programme.items) this.next = prepared;
		});
	}

	/** Builds the element of `item` in the hidden layer and waits until it can be shown. */
	private async prepare(item: ManifestItem, index: number): Promise<Prepared | null> {
		const element = await this.build(item);
		if (!element) return null;
		element.dataset.contentId = item.contentId;
		const back = this.layers[1 - this.front];
		// The hidden layer holds one prepared element at a time.
		back.replaceChildren(element);
		const ok = await ready(element);
		return ok ? { item, index, element } : null;
	}

	private async build(item: ManifestItem): Promise<HTMLElement | null> {
		if (item.type === "image") {
			const url = await objectUrl(item);
			if (!url) return null;
			const img = document.createElement("img");
			img.alt = "";
			img.src = url;
			return img;
		}
		if (item.type === "video") {
			const url = await objectUrl(item);
			if (!url) return null;
			const video = document.createElement("video");
			video.muted = true;
			video.playsInline = true;
			video.preload = "auto";
			video.src = url;
			return video;
		}
		if (!isShowableUrl(item.url, location.origin)) return null;
		const frame = document.createElement("iframe");
		frame.setAttribute("sandbox", webSandbox(item.url, location.origin));
		frame.referrerPolicy = "no-referrer";
		frame.setAttribute("allow", "autoplay");
		frame.src = item.url;
		return frame;
	}

	private finishCurrent(): void {
		const current = this.current;
		if (!current) return;
		this.current = null;
		if (current.element instanceof HTMLVideoElement) current.element.pause();
		this.options.onPlayed(playRecord(newId(), current.item, current.programme, current.startedAtMs, this.options.now()));
	}

	private showNothing(): void {
		this.finishCurrent();
		for (const layer of this.layers) {
			layer.classList.remove("visible");
			layer.replaceChildren();
		}
		this.mark(null);
	}

	private mark(contentId: string | null): void {
		this.options.mark(contentId);
	}
}

/** Resolves true once `element` can be shown without a blank frame, false if it never can. */
function ready(element: HTMLElement): Promise<boolean> {
	return new Promise(resolve => {
		const timeout = setTimeout(() => resolve(element instanceof HTMLIFrameElement), PREPARE_TIMEOUT_MS);
		const finish = (ok: boolean) => {
			clearTimeout(timeout);
			resolve(ok);
		};
		if (element instanceof HTMLImageElement) {
			element.decode().then(() => finish(true), () => finish(false));
		} else if (element instanceof HTMLVideoElement) {
			if (element.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA) return finish(true);
			element.addEventListener("loadeddata", () => finish(true), { once: true });
			element.addEventListener("error", () => finish(false), { once: true });
		} else if (element instanceof HTMLIFrameElement) {
			element.addEventListener("load", () => finish(true), { once: true });
		} else {
			finish(true);
		}
	});
}
