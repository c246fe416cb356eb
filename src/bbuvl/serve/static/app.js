// The inspector's page: a photo in, the server's findings drawn on it. Plain JS, no build step.
// The page holds no key: the browser asked for it (the server's Basic challenge) when the page was opened, keeps
// it in its own in-memory credential cache and adds it to this page's requests to the same origin. Nothing is
// written to localStorage, cookies or the URL (docs/serving.md, "The page").
(function () {
  "use strict";
  const FONT = '"Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC", "bbuvl-cjk", sans-serif';
  // The answer the page shows and the name of its photo, set together when it is drawn: what "download JSON" saves.
  let lastResult = null;
  let lastName = "photo";
  // Only the latest photo's answer may draw or be downloaded: each inspection takes the next number, and an answer
  // whose number is no longer the latest is dropped at every await (a big photo chosen first answered after a small
  // one chosen next, and the page showed it, saved under the small one's name).
  let latest = 0;
  let inFlight = null;  // the latest request's AbortController while it runs: a newer photo aborts it

  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), fileInput = $("file"), status = $("status"), download = $("download");
  // From the origin, never from the page's own URL: opened as http://user:key@host/, a relative URL would carry
  // the credentials, and fetch refuses any URL that embeds them.
  const DETECT = location.origin + "/v1/detect";

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  // Which findings are faults is the server's to say: "flagged", the objects among the verdict's faults, by the
  // thresholds that judged the photo (docs/serving.md, "POST /v1/detect"); never a list of labels here. "fault" says
  // only that a label is one the hierarchy marks: counted as a fault, a photo that passed read "20 faults", every
  // screw's unlikely fault-state alternative drawn red down to a score of 8e-05.
  function isProblem(o) {
    return o.flagged === true;
  }

  // A box whose label the hierarchy cannot read, and which may be a fault, scoring at least review, sends its photo to
  // review: the server marks it "unjudgeable". Drawn green and counted nowhere, a photo sent to review read "0 faults" with every box sound.
  function isUnjudgeable(o) {
    return o.unjudgeable === true && !isProblem(o);
  }

  function colourFor(o) {
    if (o.unknown) return "#d4a600";
    if (isProblem(o)) return "#e02424";
    if (isUnjudgeable(o)) return "#c2410c";  // orange: the verdict's review, not a sound part's green
    return o.fault === true ? "#6b7280" : "#0e9f6e";  // a fault label below the review threshold: neutral grey
  }

  // Whether this browser draws Chinese in the page's fonts (its own, or the server's /font/cjk): two different
  // characters drawn alike are its "missing glyph" box twice, the rule reports follow (eval/fonts.py). Without one,
  // every label was a row of blank boxes on the picture and in the list; they are shown by their English gloss.
  let chinese = true;
  function drawsChinese() {
    const c = document.createElement("canvas");
    c.width = c.height = 40;
    const ctx = c.getContext("2d");
    ctx.font = "24px " + FONT;
    const pixels = (ch) => { ctx.clearRect(0, 0, 40, 40); ctx.fillText(ch, 4, 30); return ctx.getImageData(0, 0, 40, 40).data.join(","); };
    return pixels("螺") !== pixels("柜");
  }

  // A label as this browser can show it: as it is, else its gloss, a part without one spelt by its code points
  // (\u6321), as reports spell it.
  function named(label, gloss) {
    if (chinese) return label;
    return String(gloss || label).replace(/[\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]/g,
      (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  }

  const VERDICT_TEXT = { pass: "合格 · pass", review: "需复核 · review", fail: "不合格 · fail" };

  function showVerdict(verdict) {
    const box = $("verdict");
    box.className = "verdict " + verdict.verdict;
    const head = document.createElement("strong");
    head.textContent = VERDICT_TEXT[verdict.verdict] || verdict.verdict;
    const why = document.createElement("span");
    why.textContent = verdict.reason ? " · " + verdict.reason : "";  // textContent: labels are data, never markup
    box.replaceChildren(head, why);
  }

  // The canvas transform that turns a picture shown as stored (sw x sh) upright by EXIF orientation o (2-8).
  const TURNS = {
    2: (sw, sh) => [-1, 0, 0, 1, sw, 0], 3: (sw, sh) => [-1, 0, 0, -1, sw, sh], 4: (sw, sh) => [1, 0, 0, -1, 0, sh],
    5: (sw, sh) => [0, 1, 1, 0, 0, 0], 6: (sw, sh) => [0, 1, -1, 0, sh, 0], 7: (sw, sh) => [0, -1, -1, 0, sh, sw],
    8: (sw, sh) => [0, -1, 1, 0, 0, sw],
  };

  function draw(img, result) {
    const canvas = $("canvas");
    const ctx = canvas.getContext("2d");
    const w = img.naturalWidth, h = img.naturalHeight;
    // The boxes are in the photo turned upright by its EXIF orientation, as the server turned it ("orientation").
    // A browser ignores the turn of some formats (Chromium a WebP's): the picture then lies as stored, its sides
    // swapped against the answer's, and the boxes were drawn across the wrong parts. Turned here, as the server did.
    const o = result.orientation;
    const asStored = o >= 5 && o <= 8 && w !== h && w === result.height && h === result.width;
    canvas.width = asStored ? h : w;
    canvas.height = asStored ? w : h;
    if (asStored) ctx.setTransform(...TURNS[o](w, h));
    ctx.drawImage(img, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    // Boxes come in the uploaded image's upright pixels, the canvas's own frame: no scaling here.
    const line = Math.max(2, Math.round(Math.min(canvas.width, canvas.height) / 200));
    const size = Math.max(12, Math.round(Math.min(canvas.width, canvas.height) / 30));
    ctx.font = size + "px " + FONT;
    let drawn = 0;
    result.objects.forEach((o, i) => {
      const [x1, y1, x2, y2] = o.bbox_2d;
      ctx.lineWidth = line;
      ctx.strokeStyle = colourFor(o);
      ctx.setLineDash(o.unknown ? [line * 3, line * 2] : []);
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const text = (i + 1) + " " + (isUnjudgeable(o) ? "! " : "") + (o.unknown ? "? " : "") + named(o.label, o.gloss);
      const w = ctx.measureText(text).width + 6;
      const ty = y1 > size + 4 ? y1 - size - 4 : y1;
      const tx = Math.max(0, Math.min(x1, canvas.width - w));  // a box at the right edge keeps its label inside
      ctx.fillStyle = colourFor(o);
      ctx.fillRect(tx, ty, w, size + 4);
      ctx.fillStyle = "#fff";
      ctx.fillText(text, tx + 3, ty + size);
      drawn += 1;
    });
    canvas.dataset.boxes = String(drawn);
  }

  function list(result) {
    const ul = $("findings");
    ul.replaceChildren();
    const order = result.objects.map((o, i) => [o, i]);
    // Problems first, then boxes of labels not judged, then unknown boxes, then the rest; each keeps its number.
    order.sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1]);
    for (const [o, i] of order) {
      const li = document.createElement("li");
      if (isProblem(o)) li.classList.add("problem");
      if (isUnjudgeable(o)) li.classList.add("unjudgeable");
      if (o.unknown) li.classList.add("unknown");
      const name = document.createElement("span");
      name.textContent = (i + 1) + ". " + named(o.label, o.gloss);  // textContent: a label is data, never markup
      if (isProblem(o)) name.append(tag("state", "⚠"));
      if (isUnjudgeable(o)) name.append(tag("unjudgeable", "无法判读 · label not judged"));
      if (o.unknown) name.append(tag("unknown", "unknown" + (o.fewshot ? " (" + named(o.fewshot.label) + " " + o.fewshot.score.toFixed(2) + ")" : "")));
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = Number(o.score).toFixed(3);
      li.append(name, score);
      ul.append(li);
    }
    $("count").textContent = "(" + result.objects.length + ")";
    $("model").textContent = JSON.stringify({ model: result.model, timing_ms: result.timing_ms }, null, 2);
  }

  function rank(o) { return isProblem(o) ? 0 : isUnjudgeable(o) ? 1 : o.unknown ? 2 : 3; }

  function tag(kind, text) {
    const t = document.createElement("span");
    t.className = "tag " + kind;
    t.textContent = text;
    return t;
  }

  // The end of the latest inspection, answered or not: the download offers what the page shows, under its own name.
  function settle() {
    inFlight = null;
    download.disabled = lastResult === null;
  }

  async function inspect(file) {
    if (!file) return;
    const mine = ++latest;
    const stale = () => mine !== latest;
    if (inFlight) inFlight.abort();
    inFlight = new AbortController();
    // While a photo is inspected the page still shows the one before: its download would read as the new photo's.
    download.disabled = true;
    say("检查中… · inspecting " + file.name);
    const form = new FormData();
    form.append("image", file, file.name);
    let response, body;
    try {
      const request = { method: "POST", credentials: "same-origin", body: form, signal: inFlight.signal };
      response = await fetch(DETECT, request);
    } catch (e) {
      if (stale()) return;  // aborted by a newer photo, or failed after one was chosen: not this page's news
      settle();
      say("请求失败 · request failed: " + e, true);
      return;
    }
    try {
      body = await response.json();
    } catch (e) {
      if (stale()) return;
      settle();
      // Not JSON: a proxy in front answered (an HTML 502 or 413 page); its status says more than a parse error.
      say(response.status + " " + (response.statusText || "error") + " (an answer that is not the server's JSON: a proxy in front?)", true);
      return;
    }
    if (stale()) return;
    if (!response.ok) {
      settle();
      const why = (body.error && body.error.message) || response.statusText;
      // 401 here: the server no longer takes the key the page was opened with (restarted with other keys).
      say(response.status + " " + why + (response.status === 401 ? " (API key refused: reload the page to enter it again)" : ""), true);
      return;
    }
    const img = new Image();
    const present = (loaded) => {
      chinese = drawsChinese();
      if (loaded) {
        draw(img, body);
      } else {
        const canvas = $("canvas");
        canvas.width = canvas.height = 0;
        canvas.dataset.boxes = "0";
      }
      lastResult = body;
      lastName = file.name.replace(/\.[^.]*$/, "") || "photo";
      settle();
      list(body);
      showVerdict(body.verdict);
      $("result").hidden = false;
      const bad = body.objects.filter(isProblem).length;
      const unread = body.objects.filter(isUnjudgeable).length;
      say((VERDICT_TEXT[body.verdict.verdict] || body.verdict.verdict) + " · " + body.objects.length + " 个目标 · objects, "
          + bad + " 个问题 · faults" + (unread ? ", " + unread + " 个无法判读 · unjudged labels" : "")
          + " (" + body.timing_ms.total + " ms)" + (loaded ? "" : " · 此浏览器无法显示该图片 · this "
          + "browser cannot show " + (file.type || "this file") + ": the findings are listed without the picture")
          + (chinese ? "" : " · no font for Chinese in this browser or on the server: labels in English (make fonts)"));
    };
    const show = (loaded) => {
      if (!stale()) present(loaded);
      URL.revokeObjectURL(img.src);
    };
    img.onload = async () => {
      // A canvas does not wait for web fonts: load the fallback CJK font first (no-op when a system one draws).
      try { await document.fonts.load('16px "bbuvl-cjk"', "螺柜"); } catch (e) { /* drawn with what there is */ }
      show(true);
    };
    // The server reads TIFF, which browsers do not: the answer is listed anyway, where the page waited for a picture
    // that never loaded and said "inspecting" forever.
    img.onerror = () => show(false);
    img.src = URL.createObjectURL(file);
  }

  download.addEventListener("click", () => {
    if (!lastResult || download.disabled) return;
    const blob = new Blob([JSON.stringify(lastResult, null, 2)], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = lastName + ".json";
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });

  drop.addEventListener("click", () => fileInput.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") fileInput.click(); });
  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    // Cleared once read: a browser fires "change" only for a choice that differs from the last, so the same photo
    // chosen again, to retry after a 503 "retry shortly" or a lost connection, was never sent and the error stayed.
    fileInput.value = "";
    inspect(file);
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    inspect(e.dataTransfer.files[0]);
  });
})();
