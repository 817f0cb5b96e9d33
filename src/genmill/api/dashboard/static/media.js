// A task's output shown as what it is: images in a gallery, audio and video players, GLB in a 3D viewer, other
// files as links. Outputs are shown by their URLs only; the files are served with their own sandboxing policy.
import { h } from "./core.js";

const KINDS = {
  image: ["png", "jpg", "jpeg", "webp", "gif", "bmp", "avif"],
  audio: ["mp3", "wav", "ogg", "oga", "flac", "m4a", "aac", "opus"],
  video: ["mp4", "webm", "mov", "mkv", "m4v"],
  model: ["glb", "gltf"],
};

function looksLikeUrl(value) {
  return typeof value === "string" && (/^https?:\/\//i.test(value) || value.startsWith("/files/"));
}

export function kindOf(url, key = "") {
  let path = url;
  try { path = new URL(url, location.href).pathname; } catch { /* keep the string */ }
  const ext = (path.split(".").pop() || "").toLowerCase();
  for (const [kind, exts] of Object.entries(KINDS)) if (exts.includes(ext)) return kind;
  const hint = key.toLowerCase();
  for (const kind of ["image", "audio", "video"]) if (hint.includes(kind)) return kind;
  return "file";
}

// Every URL in an output, with the key that named it, in order and without repeats.
export function outputFiles(output) {
  const found = [];
  const seen = new Set();
  const walk = (value, key) => {
    if (looksLikeUrl(value)) {
      if (!seen.has(value)) { seen.add(value); found.push({ url: value, key, kind: kindOf(value, key) }); }
    } else if (Array.isArray(value)) value.forEach((item) => walk(item, key));
    else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) walk(v, k);
  };
  walk(output, "");
  return found;
}

let modelViewerLoading = null;
function loadModelViewer() {
  // The viewer is large; it is loaded only when a task has a 3D output.
  modelViewerLoading ||= import("./model-viewer.min.js").catch(() => null);
  return modelViewerLoading;
}

export function mediaElement(file) {
  const caption = h("figcaption", {}, h("a", { href: file.url, target: "_blank", rel: "noopener noreferrer" }, file.key || "file"));
  if (file.kind === "image") {
    return h("figure", { class: "media image" }, h("img", { class: "output-image", src: file.url, alt: file.key || "output image", loading: "lazy" }), caption);
  }
  if (file.kind === "audio") {
    return h("figure", { class: "media audio" }, h("audio", { class: "output-audio", src: file.url, controls: true, preload: "metadata" }), caption);
  }
  if (file.kind === "video") {
    return h("figure", { class: "media video" }, h("video", { class: "output-video", src: file.url, controls: true, preload: "metadata" }), caption);
  }
  if (file.kind === "model") {
    loadModelViewer();
    return h("figure", { class: "media model" }, h("model-viewer", { class: "output-model", src: file.url, "camera-controls": true, "auto-rotate": true, alt: file.key || "3D model" }), caption);
  }
  return h("figure", { class: "media file" }, caption);
}

export function gallery(output) {
  const files = outputFiles(output);
  if (!files.length) return null;
  return h("div", { class: "gallery" }, files.map(mediaElement));
}
