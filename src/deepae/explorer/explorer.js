/* deepae explorer: the decoder of a trained autoencoder, running in the page.
 *
 * The data element holds the decoder (dense layers, float32 weights), a sample of
 * training codes in plane coordinates with their labels, and the plane itself: a plane
 * point (u, v) is the code mean + u * axes[0] + v * axes[1] (the identity for a 2-D
 * latent space). Everything is computed here; the page makes no request.
 *
 * window.deepae is a small API for tests and the curious (see the end of this file).
 */
(function () {
  "use strict";

  // -- data ------------------------------------------------------------------------------
  const DATA = JSON.parse(document.getElementById("deepae-data").textContent);
  const [IMG_H, IMG_W] = DATA.image_shape;
  const PIXELS = IMG_H * IMG_W;
  const LATENT = DATA.latent_size;
  const PLANE = DATA.plane;
  const STRIP_STEPS = 10; // images along the line between two pins, ends included
  const N = DATA.points.count;
  const XY = float32FromBase64(DATA.points.xy); // (N, 2) plane coordinates
  const LABELS = DATA.points.labels ? bytesFromBase64(DATA.points.labels) : null; // (N,)
  const INDEX = uint32FromBase64(DATA.points.index); // (N,) training-set index of each point
  const CLASSES = DATA.classes.length ? DATA.classes : ["training image"];
  // The figures' palette, embedded by Python (deepae.plots.palette); pages written before
  // it was embedded fall back to the same rule computed here.
  const COLORS =
    DATA.palette && DATA.palette.length >= CLASSES.length ? DATA.palette : palette(CLASSES.length);

  function bytesFromBase64(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  // Little-endian on every platform: DataView reads the byte order the file was written in.
  function float32FromBase64(text) {
    const view = new DataView(bytesFromBase64(text).buffer);
    const out = new Float32Array(view.byteLength / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }
  function uint32FromBase64(text) {
    const view = new DataView(bytesFromBase64(text).buffer);
    const out = new Uint32Array(view.byteLength / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getUint32(4 * i, true);
    return out;
  }
  function palette(n) {
    // Matplotlib's tab10 for up to 10 classes, then evenly spaced hues.
    const tab10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    if (n <= 10) return tab10.slice(0, n);
    return Array.from({ length: n }, (_, i) => `hsl(${Math.round((360 * i) / n)}, 65%, 45%)`);
  }

  // -- the decoder -----------------------------------------------------------------------
  // The activations of deepae.model, as PyTorch computes them (default parameters there).
  const ACTIVATIONS = {
    relu: (x) => (x > 0 ? x : 0),
    linear: (x) => x,
    sigmoid: (x) => 1 / (1 + Math.exp(-x)),
    tanh: (x) => Math.tanh(x),
    leaky_relu: (x, p) => (x >= 0 ? x : x * p.negative_slope),
    elu: (x, p) => (x > 0 ? x : p.alpha * Math.expm1(x)),
    gelu: (x, p) =>
      p.approximate === "tanh"
        ? 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)))
        : 0.5 * x * (1 + erf(x / Math.SQRT2)),
  };

  // erf to ~1e-15: Maclaurin series below 2.5, else the continued fraction of erfc
  // (Abramowitz & Stegun 7.1.14), which converges fast for large arguments.
  function erf(x) {
    const a = Math.abs(x);
    let r;
    if (a < 2.5) {
      let term = a;
      let sum = a;
      for (let n = 1; n < 80; n++) {
        term *= (-a * a) / n;
        const t = term / (2 * n + 1);
        sum += t;
        if (Math.abs(t) < 1e-17) break;
      }
      r = (2 / Math.sqrt(Math.PI)) * sum;
    } else {
      let f = a;
      for (let k = 60; k >= 1; k--) f = a + k / 2 / f;
      r = 1 - Math.exp(-a * a) / (Math.sqrt(Math.PI) * f);
    }
    return x < 0 ? -r : r;
  }

  const LAYERS = DATA.decoder.layers;
  const WEIGHTS = float32FromBase64(DATA.decoder.weights);
  for (const layer of LAYERS) {
    if (!(layer.activation in ACTIVATIONS)) {
      throw new Error(`deepae explorer: unknown activation ${layer.activation}`);
    }
  }
  const BUFFERS = LAYERS.map((layer) => new Float64Array(layer.out));

  // Code z (LATENT numbers) -> image (PIXELS,) float32. Products are summed in float64,
  // so the result is at least as exact as PyTorch's float32 and agrees with it to ~1e-6.
  function decodeLatent(z) {
    let input = z;
    for (let li = 0; li < LAYERS.length; li++) {
      const layer = LAYERS[li];
      const out = BUFFERS[li];
      const act = ACTIVATIONS[layer.activation];
      const p = layer.params;
      const n = layer.in;
      const w0 = layer.weight_offset;
      const b0 = layer.bias_offset;
      for (let o = 0; o < layer.out; o++) {
        let acc = WEIGHTS[b0 + o];
        const row = w0 + o * n;
        for (let i = 0; i < n; i++) acc += WEIGHTS[row + i] * input[i];
        out[o] = act(acc, p);
      }
      input = out;
    }
    return Float32Array.from(input);
  }

  // Plane point -> code. The model takes float32 codes, so the code is rounded to float32.
  function planeToLatent(u, v) {
    const z = new Float64Array(LATENT);
    for (let k = 0; k < LATENT; k++) {
      z[k] = Math.fround(PLANE.mean[k] + u * PLANE.axes[0][k] + v * PLANE.axes[1][k]);
    }
    return z;
  }
  function latentToPlane(z) {
    let u = 0;
    let v = 0;
    for (let k = 0; k < LATENT; k++) {
      u += (z[k] - PLANE.mean[k]) * PLANE.axes[0][k];
      v += (z[k] - PLANE.mean[k]) * PLANE.axes[1][k];
    }
    return [u, v];
  }
  function decode(u, v) {
    return decodeLatent(planeToLatent(u, v));
  }

  // -- the training images (for "nearest training image") -------------------------------
  let IMAGES = null; // (count, PIXELS) uint8, images of the first `count` points
  let imageCount = 0;
  let imageStatus = DATA.images.count ? "loading" : "none";

  async function loadImages() {
    if (!DATA.images.count) return;
    if (typeof DecompressionStream === "undefined") {
      imageStatus = "unsupported";
      return;
    }
    const packed = bytesFromBase64(document.getElementById("deepae-images").textContent.trim());
    const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("deflate"));
    IMAGES = new Uint8Array(await new Response(stream).arrayBuffer());
    imageCount = DATA.images.count;
    imageStatus = "ready";
  }

  const hidden = new Set(); // labels switched off in the legend
  function labelOf(i) {
    return LABELS ? LABELS[i] : 0;
  }

  // The embedded point nearest to plane point (u, v), among visible classes.
  function nearest(u, v) {
    if (!IMAGES) return null;
    let best = -1;
    let bestD = Infinity;
    for (let i = 0; i < imageCount; i++) {
      if (hidden.size && hidden.has(labelOf(i))) continue;
      const du = XY[2 * i] - u;
      const dv = XY[2 * i + 1] - v;
      const d = du * du + dv * dv;
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    if (best < 0) return null;
    return {
      point: best,
      index: INDEX[best],
      label: LABELS ? LABELS[best] : null,
      className: LABELS ? CLASSES[LABELS[best]] : null,
      u: XY[2 * best],
      v: XY[2 * best + 1],
      distance: Math.sqrt(bestD),
      pixels: IMAGES.subarray(best * PIXELS, (best + 1) * PIXELS),
    };
  }

  // -- view: plane <-> canvas pixels ------------------------------------------------------
  const wrap = document.getElementById("plot-wrap");
  const base = document.getElementById("scatter");
  const overlay = document.getElementById("overlay");
  const MARGIN = { left: 62, right: 14, top: 12, bottom: 44 };
  let cssW = 0;
  let cssH = 0;
  let dpr = 1;
  const homeView = { ...DATA.view };
  let view = { ...DATA.view };

  function plotRect() {
    return {
      left: MARGIN.left,
      top: MARGIN.top,
      width: cssW - MARGIN.left - MARGIN.right,
      height: cssH - MARGIN.top - MARGIN.bottom,
    };
  }
  // Canvas CSS pixel (px, py) -> plane point [u, v]; (px, py) = (0, 0) is the canvas corner.
  function toPlane(px, py) {
    const r = plotRect();
    return [
      view.x0 + ((px - r.left) / r.width) * (view.x1 - view.x0),
      view.y1 - ((py - r.top) / r.height) * (view.y1 - view.y0),
    ];
  }
  function toPixel(u, v) {
    const r = plotRect();
    return [
      r.left + ((u - view.x0) / (view.x1 - view.x0)) * r.width,
      r.top + ((view.y1 - v) / (view.y1 - view.y0)) * r.height,
    ];
  }
  function inPlot(px, py) {
    const r = plotRect();
    return px >= r.left && px <= r.left + r.width && py >= r.top && py <= r.top + r.height;
  }

  function resize() {
    const box = wrap.getBoundingClientRect();
    cssW = Math.max(240, Math.floor(box.width));
    cssH = Math.max(240, Math.floor(box.height));
    dpr = window.devicePixelRatio || 1;
    for (const c of [base, overlay]) {
      c.width = Math.round(cssW * dpr);
      c.height = Math.round(cssH * dpr);
      c.style.width = `${cssW}px`;
      c.style.height = `${cssH}px`;
    }
    sprites = null;
    drawScatter();
    drawOverlay();
  }

  // -- drawing ---------------------------------------------------------------------------
  // Ticks at round numbers over [lo, hi]: about `target` of them, never more than 100. The
  // count is fixed before the loop: far from 0, k + 1 can equal k in float64, and a loop on
  // k * step <= hi would then never end (a point typed at 2e15 would hang the page).
  function niceTicks(lo, hi, target) {
    const raw = (hi - lo) / target;
    if (!(raw > 0 && Number.isFinite(raw))) return [];
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
    const first = Math.ceil(lo / step);
    const count = Math.min(100, Math.floor(hi / step + 1e-9) - first + 1);
    const ticks = [];
    for (let i = 0; i < count; i++) {
      const t = (first + i) * step;
      if (!ticks.length || t > ticks[ticks.length - 1]) ticks.push(t);
    }
    const decimals = Math.min(100, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
    return ticks.map((t) => [t, t.toFixed(decimals)]);
  }

  let sprites = null; // one pre-drawn dot per class: drawImage is faster than arc()
  function pointSize() {
    const zoom = Math.sqrt((homeView.x1 - homeView.x0) / (view.x1 - view.x0));
    const density = N > 20000 ? 0.8 : N > 5000 ? 1 : 1.4;
    return Math.min(9, Math.max(2.5, 3.2 * density * zoom));
  }
  function makeSprites(size) {
    return COLORS.map((color) => {
      const c = document.createElement("canvas");
      c.width = c.height = Math.ceil(size * dpr) + 2;
      const ctx = c.getContext("2d");
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.arc(c.width / 2, c.height / 2, (size * dpr) / 2, 0, 2 * Math.PI);
      ctx.fill();
      return c;
    });
  }

  function drawScatter() {
    const ctx = base.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const r = plotRect();
    drawAxes(ctx, r);
    const size = pointSize();
    if (!sprites || sprites.size !== size) {
      sprites = makeSprites(size);
      sprites.size = size;
    }
    const s = sprites[0].width / dpr;
    ctx.save();
    ctx.beginPath();
    ctx.rect(r.left, r.top, r.width, r.height);
    ctx.clip();
    ctx.globalAlpha = 0.7;
    const sx = r.width / (view.x1 - view.x0);
    const sy = r.height / (view.y1 - view.y0);
    for (let i = 0; i < N; i++) {
      const label = labelOf(i);
      if (hidden.size && hidden.has(label)) continue;
      const px = r.left + (XY[2 * i] - view.x0) * sx;
      const py = r.top + (view.y1 - XY[2 * i + 1]) * sy;
      if (px < r.left - s || px > r.left + r.width + s || py < r.top - s || py > r.top + r.height + s) {
        continue;
      }
      ctx.drawImage(sprites[label], px - s / 2, py - s / 2, s, s);
    }
    ctx.restore();
  }

  function drawAxes(ctx, r) {
    ctx.save();
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillStyle = "#5d6875";
    ctx.strokeStyle = "#eceff3";
    ctx.lineWidth = 1;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const [t, text] of niceTicks(view.x0, view.x1, Math.max(3, r.width / 90))) {
      const [px] = toPixel(t, 0);
      ctx.beginPath();
      ctx.moveTo(Math.round(px) + 0.5, r.top);
      ctx.lineTo(Math.round(px) + 0.5, r.top + r.height);
      ctx.stroke();
      ctx.fillText(text, px, r.top + r.height + 5);
    }
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const [t, text] of niceTicks(view.y0, view.y1, Math.max(3, r.height / 70))) {
      const [, py] = toPixel(0, t);
      ctx.beginPath();
      ctx.moveTo(r.left, Math.round(py) + 0.5);
      ctx.lineTo(r.left + r.width, Math.round(py) + 0.5);
      ctx.stroke();
      ctx.fillText(text, r.left - 6, py);
    }
    ctx.strokeStyle = "#c3cad2";
    ctx.strokeRect(r.left + 0.5, r.top + 0.5, r.width - 1, r.height - 1);
    ctx.fillStyle = "#1d232b";
    ctx.font = "13px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.fillText(PLANE.labels[0], r.left + r.width / 2, cssH - 2);
    ctx.translate(14, r.top + r.height / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(PLANE.labels[1], 0, 0);
    ctx.restore();
  }

  let cursor = null; // {px, py} while the pointer is over the plot
  let typed = null; // [u, v] of the last typed coordinates
  let near = null; // nearest() of the current point
  let pins = []; // [[u, v], ...], at most two

  function drawOverlay() {
    const ctx = overlay.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const r = plotRect();
    ctx.save();
    ctx.beginPath();
    ctx.rect(r.left, r.top, r.width, r.height);
    ctx.clip();
    if (near) {
      const [px, py] = toPixel(near.u, near.v);
      ring(ctx, px, py, 7, "#1d232b", 1.5);
    }
    if (pins.length === 2) {
      const [ax, ay] = toPixel(...pins[0]);
      const [bx, by] = toPixel(...pins[1]);
      ctx.strokeStyle = "rgba(29, 35, 43, .75)";
      ctx.lineWidth = 2;
      ctx.setLineDash([6, 4]);
      ctx.beginPath();
      ctx.moveTo(ax, ay);
      ctx.lineTo(bx, by);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = "#1d232b";
      for (let k = 1; k < STRIP_STEPS - 1; k++) {
        const t = k / (STRIP_STEPS - 1);
        ctx.beginPath();
        ctx.arc(ax + (bx - ax) * t, ay + (by - ay) * t, 2.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    pins.forEach(([u, v], k) => marker(ctx, ...toPixel(u, v), k === 0 ? "A" : "B"));
    if (typed) {
      const [px, py] = toPixel(...typed);
      ctx.strokeStyle = "#1f6feb";
      ctx.lineWidth = 2.5;
      ctx.beginPath();
      ctx.moveTo(px - 8, py - 8);
      ctx.lineTo(px + 8, py + 8);
      ctx.moveTo(px - 8, py + 8);
      ctx.lineTo(px + 8, py - 8);
      ctx.stroke();
    }
    if (cursor) {
      ctx.strokeStyle = "rgba(29, 35, 43, .35)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(cursor.px, r.top);
      ctx.lineTo(cursor.px, r.top + r.height);
      ctx.moveTo(r.left, cursor.py);
      ctx.lineTo(r.left + r.width, cursor.py);
      ctx.stroke();
    }
    ctx.restore();
  }
  function ring(ctx, px, py, radius, color, width) {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    ctx.arc(px, py, radius, 0, 2 * Math.PI);
    ctx.stroke();
  }
  function marker(ctx, px, py, text) {
    ctx.fillStyle = text === "A" ? "#d1242f" : "#1a7f37";
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(px, py, 10, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = "#fff";
    ctx.font = "bold 12px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(text, px, py + 0.5);
  }

  // Grey levels of an image into a canvas of the image's own size; CSS scales it up with
  // crisp pixels. Floats are clipped to [0, 1] and rounded to 0..255.
  function paintImage(canvas, values, isBytes) {
    if (canvas.width !== IMG_W || canvas.height !== IMG_H) {
      canvas.width = IMG_W;
      canvas.height = IMG_H;
    }
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(IMG_W, IMG_H);
    for (let i = 0; i < PIXELS; i++) {
      const g = isBytes ? values[i] : Math.round(Math.min(1, Math.max(0, values[i])) * 255);
      img.data[4 * i] = g;
      img.data[4 * i + 1] = g;
      img.data[4 * i + 2] = g;
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  // -- the side panel --------------------------------------------------------------------
  const decodedCanvas = document.getElementById("decoded");
  const nearestCanvas = document.getElementById("nearest");
  const nearestCaption = document.getElementById("nearest-caption");
  const readout = document.getElementById("readout");
  let current = null;

  function fmt(x) {
    const text = x.toFixed(3);
    return text === "-0.000" ? "0.000" : text;
  }

  // Show the decode of plane point (u, v), or of the code z when given (typed codes).
  function showAt(u, v, source, z) {
    const code = z || planeToLatent(u, v);
    const pixels = decodeLatent(code);
    current = { u, v, z: Array.from(code), pixels, source };
    paintImage(decodedCanvas, pixels, false);
    readout.dataset.u = String(u);
    readout.dataset.v = String(v);
    const zText = `z = (${current.z.map(fmt).join(", ")})`;
    readout.textContent = PLANE.pca
      ? `${PLANE.labels[0]} = ${fmt(u)}, ${PLANE.labels[1]} = ${fmt(v)}  \u2192  ${zText}`
      : zText;
    showNearest(u, v);
    drawOverlay();
  }

  function showNearest(u, v) {
    near = nearest(u, v);
    if (!near) {
      const ctx = nearestCanvas.getContext("2d");
      ctx.clearRect(0, 0, nearestCanvas.width, nearestCanvas.height);
      const why = {
        loading: "loading the training images\u2026",
        none: "no training images are embedded in this page",
        unsupported: "needs a browser with DecompressionStream",
        ready: "every class is hidden",
      }[imageStatus];
      nearestCaption.innerHTML = `<b>nearest training image</b>: ${why}`;
      return;
    }
    paintImage(nearestCanvas, near.pixels, true);
    const label = near.className === null ? "" : `label <b>${escapeHtml(near.className)}</b>, `;
    nearestCaption.innerHTML =
      `<b>nearest training image</b>: ${label}#${near.index}, ` +
      `${near.distance.toFixed(3)} away`;
  }
  function escapeHtml(text) {
    const el = document.createElement("span");
    el.textContent = text;
    return el.innerHTML;
  }

  // -- pins and the strip between them ---------------------------------------------------
  const strip = document.getElementById("strip");
  const pinsText = document.getElementById("pins-text");
  const clearButton = document.getElementById("clear-pins");

  function pin(u, v) {
    if (pins.length === 2) pins = [];
    pins.push([u, v]);
    renderPins();
  }
  function clearPins() {
    pins = [];
    renderPins();
  }
  function stripPoints() {
    if (pins.length < 2) return [];
    const [[au, av], [bu, bv]] = pins;
    return Array.from({ length: STRIP_STEPS }, (_, k) => {
      const t = k / (STRIP_STEPS - 1);
      return [au + (bu - au) * t, av + (bv - av) * t, t];
    });
  }
  function renderPins() {
    clearButton.hidden = pins.length === 0;
    const names = pins.map(([u, v], k) => `${"AB"[k]} = (${fmt(u)}, ${fmt(v)})`);
    if (pins.length === 0) pinsText.textContent = "Click the plane to pin point A, then point B.";
    else if (pins.length === 1) pinsText.textContent = `${names[0]}. Now click to pin B.`;
    else pinsText.textContent = `${names.join(" to ")}: the decoder along the straight line.`;
    const points = stripPoints();
    if (strip.children.length !== points.length) {
      strip.replaceChildren(
        ...points.map((_, k) => {
          const fig = document.createElement("figure");
          if (k === 0 || k === points.length - 1) fig.className = k === 0 ? "end" : "end b";
          fig.append(document.createElement("canvas"), document.createElement("figcaption"));
          fig.addEventListener("click", () => showAt(...stripPoints()[k].slice(0, 2), "strip"));
          return fig;
        }),
      );
    }
    points.forEach(([u, v, t], k) => {
      const fig = strip.children[k];
      paintImage(fig.firstChild, decode(u, v), false);
      const end = k === 0 ? "A" : k === points.length - 1 ? "B" : `t=${t.toFixed(2)}`;
      fig.lastChild.textContent = end;
    });
    drawOverlay();
  }
  clearButton.addEventListener("click", clearPins);

  // -- pointer, wheel and buttons --------------------------------------------------------
  let drag = null;
  let frame = 0;
  function redrawSoon() {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      drawScatter();
      drawOverlay();
    });
  }
  function local(event) {
    const box = overlay.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }
  function hover(px, py) {
    cursor = { px, py };
    const [u, v] = toPlane(px, py);
    showAt(u, v, "cursor");
  }
  function pinAt(px, py) {
    for (let k = pins.length - 1; k >= 0; k--) {
      const [qx, qy] = toPixel(...pins[k]);
      if (Math.hypot(px - qx, py - qy) <= 11) return k;
    }
    return -1;
  }

  overlay.addEventListener("pointerdown", (event) => {
    const [px, py] = local(event);
    if (!inPlot(px, py)) return;
    overlay.setPointerCapture(event.pointerId);
    const hit = pinAt(px, py);
    const mode = hit >= 0 ? "pin" : event.pointerType === "mouse" ? "pan" : "touch";
    drag = { mode, x0: px, y0: py, lastX: px, lastY: py, moved: false, pin: hit };
    if (mode === "touch") hover(px, py);
  });
  overlay.addEventListener("pointermove", (event) => {
    const [px, py] = local(event);
    if (drag) {
      if (Math.hypot(px - drag.x0, py - drag.y0) > 4) drag.moved = true;
      if (drag.mode === "pan" && drag.moved) {
        overlay.classList.add("panning");
        const r = plotRect();
        const du = ((px - drag.lastX) / r.width) * (view.x1 - view.x0);
        const dv = ((py - drag.lastY) / r.height) * (view.y1 - view.y0);
        view = { x0: view.x0 - du, x1: view.x1 - du, y0: view.y0 + dv, y1: view.y1 + dv };
        redrawSoon();
      } else if (drag.mode === "pin") {
        pins[drag.pin] = toPlane(px, py);
        renderPins();
      }
      drag.lastX = px;
      drag.lastY = py;
    }
    if (inPlot(px, py)) hover(px, py);
  });
  overlay.addEventListener("pointerup", (event) => {
    const [px, py] = local(event);
    if (drag && !drag.moved && drag.mode !== "pin" && inPlot(px, py)) pin(...toPlane(px, py));
    overlay.classList.remove("panning");
    drag = null;
  });
  overlay.addEventListener("pointercancel", () => {
    overlay.classList.remove("panning");
    drag = null;
  });
  overlay.addEventListener("pointerleave", () => {
    cursor = null;
    drawOverlay();
  });
  overlay.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const [px, py] = local(event);
      zoomAt(px, py, Math.exp(event.deltaY * 0.0015));
    },
    { passive: false },
  );

  // The narrowest view around coordinate c on an axis whose home view is `home` wide:
  // 1e-9 of that, or of |c| far from 0. Float32 codes resolve ~1e-7 of their size, and a
  // narrower view would run out of float64 digits: pixels, and ticks, would merge.
  function narrowest(c, home) {
    return 1e-9 * Math.max(Math.abs(c), home);
  }
  function zoomAt(px, py, requested) {
    const [u, v] = toPlane(px, py);
    const factor = Math.max(
      requested,
      narrowest(u, homeView.x1 - homeView.x0) / (view.x1 - view.x0),
      narrowest(v, homeView.y1 - homeView.y0) / (view.y1 - view.y0),
    );
    view = {
      x0: u + (view.x0 - u) * factor,
      x1: u + (view.x1 - u) * factor,
      y0: v + (view.y0 - v) * factor,
      y1: v + (view.y1 - v) * factor,
    };
    redrawSoon();
  }
  function zoomCentre(factor) {
    const r = plotRect();
    zoomAt(r.left + r.width / 2, r.top + r.height / 2, factor);
  }
  document.getElementById("zoom-in").addEventListener("click", () => zoomCentre(1 / 1.5));
  document.getElementById("zoom-out").addEventListener("click", () => zoomCentre(1.5));
  document.getElementById("zoom-reset").addEventListener("click", () => {
    view = { ...homeView };
    redrawSoon();
  });

  // -- typed coordinates -----------------------------------------------------------------
  const form = document.getElementById("coord-form");
  const coords = document.getElementById("coords");
  const coordError = document.getElementById("coord-error");
  const example = PLANE.pca ? "1.5, -0.5" : "1.5, 3";
  coords.placeholder = `x, y   e.g. ${example}`;
  document.getElementById("coords-label").textContent = PLANE.pca
    ? `Decode a plane point (${PLANE.labels.join(", ")}), or a full ${LATENT}-number code`
    : "Decode coordinates (x, y): the article's \u201cgiven a pair of x-y values\u201d";

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const parts = coords.value.split(/[\s,;()]+/).filter((s) => s.length);
    const values = parts.map(Number);
    const ok = values.every((x) => Number.isFinite(x));
    const isCode = LATENT !== 2 && values.length === LATENT;
    if (!ok || (values.length !== 2 && !isCode)) {
      const also = LATENT !== 2 ? ` or ${LATENT} numbers (a code)` : "";
      coordError.textContent = `Type two numbers${also}, e.g. ${example}`;
      return;
    }
    coordError.textContent = "";
    let u;
    let v;
    let z = null;
    if (isCode) {
      z = Float64Array.from(values, Math.fround);
      [u, v] = latentToPlane(z);
    } else {
      [u, v] = values;
    }
    typed = [u, v];
    if (u < view.x0 || u > view.x1 || v < view.y0 || v > view.y1) {
      const w = Math.max(view.x1 - view.x0, narrowest(u, homeView.x1 - homeView.x0)) / 2;
      const h = Math.max(view.y1 - view.y0, narrowest(v, homeView.y1 - homeView.y0)) / 2;
      view = { x0: u - w, x1: u + w, y0: v - h, y1: v + h };
      redrawSoon();
    }
    showAt(u, v, "typed", z);
  });

  // -- legend, captions ------------------------------------------------------------------
  function buildLegend() {
    const legend = document.getElementById("legend");
    if (!LABELS) {
      legend.hidden = true;
      return;
    }
    const counts = new Array(CLASSES.length).fill(0);
    for (let i = 0; i < N; i++) counts[LABELS[i]]++;
    CLASSES.forEach((name, c) => {
      if (!counts[c]) return;
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.title = `show or hide ${name}`;
      chip.innerHTML =
        `<span class="dot" style="background:${COLORS[c]}"></span>${escapeHtml(name)}` +
        ` <span class="count">${counts[c].toLocaleString("en")}</span>`;
      chip.addEventListener("click", () => {
        if (hidden.has(c)) hidden.delete(c);
        else hidden.add(c);
        chip.classList.toggle("off", hidden.has(c));
        drawScatter();
        if (current) showNearest(current.u, current.v);
        drawOverlay();
      });
      legend.append(chip);
    });
  }

  function writeCaptions() {
    const layers = LAYERS.map((l) => `${l.out} ${l.activation}`).join(" \u2192 ");
    document.getElementById("subtitle").textContent =
      `${N.toLocaleString("en")} training codes \u00b7 model ${DATA.architecture} \u00b7 ` +
      `decoder in this page: ${LATENT} \u2192 ${layers}`;
    document.getElementById("about-plane").textContent = PLANE.pca
      ? `The latent space has ${LATENT} dimensions, so this plane is the one spanned by the ` +
        "first two principal components of the training codes: the point (PC1, PC2) = " +
        "(u, v) stands for the code mean + u \u00b7 pc1 + v \u00b7 pc2, and that code is decoded."
      : "The axes are the two latent units themselves: a point is a code.";
    const count = DATA.images.count;
    document.getElementById("about-images").textContent = count
      ? `The nearest training image is searched among the ${count.toLocaleString("en")} ` +
        "points whose images are stored in this page (a stratified sample of the training set), " +
        "by distance in this plane."
      : "No training images are stored in this page, so there is no nearest image.";
  }

  // -- start -----------------------------------------------------------------------------
  buildLegend();
  writeCaptions();
  renderPins();
  resize();
  showAt((view.x0 + view.x1) / 2, (view.y0 + view.y1) / 2, "start");
  window.addEventListener("resize", resize);
  performance.mark("deepae-scatter-drawn");

  const api = {
    data: {
      imageShape: [IMG_H, IMG_W],
      latentSize: LATENT,
      points: N,
      plane: PLANE,
      classes: CLASSES,
      layers: LAYERS,
      imagesEmbedded: DATA.images.count,
    },
    decode, // (u, v) plane point -> Float32Array image
    decodeLatent, // code (LATENT numbers) -> Float32Array image
    planeToLatent,
    latentToPlane,
    toPlane, // canvas CSS pixel -> plane point
    toLatent: (px, py) => Array.from(planeToLatent(...toPlane(px, py))),
    toPixel, // plane point -> canvas CSS pixel
    plotRect,
    nearest,
    showAt: (u, v) => showAt(u, v, "api"),
    pin,
    clearPins,
    stripPoints,
    get view() {
      return { ...view };
    },
    get colors() {
      return COLORS.slice(); // class c is drawn in colors[c]
    },
    get pins() {
      return pins.map((p) => p.slice());
    },
    get current() {
      return current;
    },
    get imageStatus() {
      return imageStatus;
    },
    firstPaint: null, // ms after navigation start when the first scatter frame was drawn
    ready: null, // resolves once the training images are unpacked
  };
  api.ready = new Promise((resolve) => {
    requestAnimationFrame(() => {
      api.firstPaint = performance.now();
      // After the first frame: unpacking the images must not delay the scatter.
      setTimeout(() => {
        loadImages()
          .catch((error) => {
            imageStatus = "error";
            console.error("deepae explorer: cannot unpack the training images", error);
          })
          .then(() => {
            if (current) showNearest(current.u, current.v);
            drawOverlay();
            resolve(imageStatus);
          });
      }, 0);
    });
  });
  window.deepae = api;
})();
