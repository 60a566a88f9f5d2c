// A small chart of a channel's devices over time, drawn as SVG elements (no markup strings).

import { svg, utc } from "./dom.js";

export function sparkline(series, { width = 160, height = 36, label = "" } = {}) {
  const values = series.devices;
  const top = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const y = (v) => (height - 2 - ((height - 4) * v) / top).toFixed(1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${y(v)}`);
  const area = `0,${height} ${points.join(" ")} ${width},${height}`;
  const first = values[0] ?? 0;
  const last = values[values.length - 1] ?? 0;
  const title = `${label}${label ? ": " : ""}${first} devices at ${utc(series.since)}, ` +
    `${last} at ${utc(series.until)}, at most ${Math.max(0, ...values)}`;
  return svg(
    "svg",
    {
      class: "spark",
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": title,
      preserveAspectRatio: "none",
    },
    svg("title", {}, title),
    svg("polygon", { class: "spark-area", points: area }),
    svg("polyline", { class: "spark-line", points: points.join(" ") }),
  );
}
