// Danmaku flying over a video, right to left: the live room (room.js) and the replay page
// (record.js) share it. Each one crosses the picture in FLY_MS whatever its length, so a longer
// one moves faster; it flies in one of LANES rows, the first row it can never run into the
// previous one of, and not at all when every row is busy (the side list still has it).
// Text goes in with textContent, never as HTML; places go through CSSOM (element.style), which
// the pages' Content-Security-Policy allows where it refuses style attributes.
"use strict";

(() => {
  const FLY_MS = 8000;
  const LANES = 8;
  // Room kept free between two danmaku of a row.
  const GAP_PX = 24;

  // localStorage may be switched off (private windows): the settings then last for the page.
  const stored = (key) => {
    try { return localStorage.getItem(key); } catch (_) { return null; }
  };
  const store = (key, value) => {
    try { localStorage.setItem(key, value); } catch (_) { /* kept for this page only */ }
  };

  class DanmakuOverlay {
    constructor(element) {
      this.element = element;
      // Per row, its last danmaku: when it started, its width and how far it travels.
      this.last = new Array(LANES).fill(null);
    }

    // Whether row `lane` takes, at `now`, a danmaku `width` wide travelling `travel`: the row's
    // last one has come in from the right edge (with a gap), and it is gone before the new one,
    // the faster if longer, reaches the left edge.
    free(lane, width, travel, now) {
      const last = this.last[lane];
      if (!last) return true;
      const elapsed = now - last.start;
      const tailIn = (FLY_MS * (last.width + GAP_PX)) / last.travel;
      const noCatchUp = (FLY_MS * (width + GAP_PX)) / travel;
      return elapsed >= tailIn && elapsed >= noCatchUp;
    }

    // Flies `text` from `now` (ms, on the caller's clock: the video's time for a replay);
    // `options`: `id` (what `remove` names), `title`, `mine` (the viewer's own). The element,
    // or null when it did not fly (hidden overlay, every row busy).
    fly(text, now, options = {}) {
      if (this.element.hidden) return null;
      const item = document.createElement("span");
      item.className = "flying";
      if (options.mine) item.classList.add("mine");
      if (options.title) item.title = options.title;
      if (options.id !== undefined) item.dataset.danmakuId = String(options.id);
      item.textContent = text;
      this.element.append(item);
      const width = item.offsetWidth;
      const travel = Math.max(this.element.clientWidth + width, 1);
      const lane = this.last.findIndex((_, i) => this.free(i, width, travel, now));
      if (lane < 0) {
        item.remove();
        return null;
      }
      item.style.top = `${(lane * 100) / LANES}%`;
      item.style.setProperty("--travel", `-${travel}px`);
      item.style.animationDuration = `${FLY_MS}ms`;
      item.classList.add("go");
      this.last[lane] = { start: now, width, travel };
      item.addEventListener("animationend", () => item.remove());
      return item;
    }

    remove(id) {
      for (const item of this.element.querySelectorAll(`[data-danmaku-id="${Number(id)}"]`)) {
        item.remove();
      }
    }

    clear() {
      this.element.replaceChildren();
      this.last.fill(null);
    }

    // A checkbox showing or hiding the overlay, its choice kept under `key`.
    bindToggle(checkbox, key) {
      const apply = (on) => {
        checkbox.checked = on;
        this.element.hidden = !on;
        if (!on) this.clear();
      };
      apply(stored(key) !== "off");
      checkbox.addEventListener("change", () => {
        store(key, checkbox.checked ? "on" : "off");
        apply(checkbox.checked);
      });
    }

    // A range input (percent) setting the overlay's opacity, kept under `key`.
    bindOpacity(input, key) {
      const apply = (percent) => {
        input.value = String(percent);
        this.element.style.setProperty("opacity", String(percent / 100));
      };
      const saved = Number(stored(key));
      const usable = saved >= Number(input.min) && saved <= Number(input.max);
      apply(usable ? saved : Number(input.value));
      input.addEventListener("input", () => {
        store(key, input.value);
        apply(Number(input.value));
      });
    }
  }

  window.DanmakuOverlay = DanmakuOverlay;
})();
