// Sketch files read by the page itself (no server needed, so "Load sketch" works offline too): the forms the Python
// API takes, with its one-line messages. A JSON file holds one sketch, a Quick, Draw! ndjson file one a line
// (blank lines are passed over); a sketch is a record {"drawing": [[xs, ys], ...] or [[xs, ys, ts], ...]} (ts
// ignored), a bare drawing [[xs, ys], ...] / [[xs, ys, ts], ...] (what `model.predict` takes), or the HTTP body's
// points form {"points": [[x, y, pen_end], ...]}. The checks and their messages are r2cnn.strokes'
// (checked_drawing, rows_points) and r2cnn.data.formats.ndjson's (parse_ndjson_line): "NAME:LINE: field 'F':
// reason (detail)"; tests/test_serve_browser.py feeds the same bad files to both. SVG files go to the server
// (POST api/parse).
"use strict";

const SKETCH_MAX_POINTS = 65535;  // r2cnn.strokes.MAX_POINTS
const SKETCH_MAX_STROKES = 65535;  // r2cnn.strokes.MAX_STROKES
const SKETCH_FLOAT32_MAX = 3.4028234663852886e38;
// r2cnn.data.formats.ndjson._FIELD_TYPES, as Python type names
const SKETCH_FIELD_TYPES = {word: ["str"], countrycode: ["str"], timestamp: ["str", "int", "float"],
                            recognized: ["bool"], key_id: ["str", "int"]};

class SketchFileError extends Error {}

/** r2cnn.errors.SketchFormatError's message: "source:line: field 'F': reason (detail)". */
function sketchFileError(source, reason, {line = null, field = null, detail = null} = {}) {
  const where = line === null ? source : `${source}:${line}`;
  const what = field ? `field '${field}': ` : "";
  return new SketchFileError(`${where}: ${what}${reason}${detail ? ` (${detail})` : ""}`);
}

/** The Python type name of a JSON value, as the Python messages name it. */
function pythonType(v) {
  if (v === null) return "NoneType";
  if (Array.isArray(v)) return "list";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float";
  return {boolean: "bool", string: "str", object: "dict"}[typeof v] || typeof v;
}

/** r2cnn.strokes.checked_drawing: a drawing of JSON values -> strokes [[xs, ys], ...] (raw strokes' ts
 *  dropped), or the SketchFileError naming the field. */
function checkedDrawing(drawing, source, line) {
  const fail = (reason, field = "drawing", detail = null) => {
    throw sketchFileError(source, reason, {line, field, detail});
  };
  if (!Array.isArray(drawing)) fail("drawing is not a list of strokes");
  if (!drawing.length) fail("empty drawing");
  if (drawing.length > SKETCH_MAX_STROKES) fail("too many strokes", "drawing",
                                                `${drawing.length} > ${SKETCH_MAX_STROKES}`);
  let arity = null, total = 0;
  const strokes = drawing.map((stroke, i) => {
    if (!Array.isArray(stroke) || (stroke.length !== 2 && stroke.length !== 3)) {
      fail("stroke is not [xs, ys] or [xs, ys, ts]", `drawing[${i}]`);
    }
    if (arity === null) arity = stroke.length;
    else if (stroke.length !== arity) fail("raw and simplified strokes mixed", `drawing[${i}]`);
    stroke.forEach((values, c) => {
      if (!Array.isArray(values)) fail("not a list of numbers", `drawing[${i}][${c}]`);
      values.forEach((v, j) => {
        if (typeof v !== "number") fail("not a number", `drawing[${i}][${c}][${j}]`, pythonType(v));
        if (!(Math.abs(v) <= SKETCH_FLOAT32_MAX)) fail("non-finite coordinate", `drawing[${i}][${c}][${j}]`,
                                                       String(v));
      });
    });
    const n = stroke[0].length;
    if (stroke[1].length !== n) fail("x/y length mismatch", `drawing[${i}]`, `${n} x, ${stroke[1].length} y`);
    if (arity === 3 && stroke[2].length !== n) fail("x/t length mismatch", `drawing[${i}]`,
                                                    `${n} x, ${stroke[2].length} t`);
    if (n === 0) fail("empty stroke", `drawing[${i}]`);
    total += n;
    return [stroke[0], stroke[1]];
  });
  if (total > SKETCH_MAX_POINTS) fail("too many points", "drawing", `${total} > ${SKETCH_MAX_POINTS}`);
  return strokes;
}

/** r2cnn.strokes.rows_points: rows [x, y, pen_end] -> strokes [[xs, ys], ...] (a stroke ends where pen_end is 1;
 *  points after the last such end make the last stroke). */
function checkedRows(rows, source, line) {
  const fail = (reason, field = "points", detail = null) => {
    throw sketchFileError(source, reason, {line, field, detail});
  };
  if (!Array.isArray(rows)) fail("wrong shape", "points", `${pythonType(rows)}, expected (N, 3) rows [x, y, pen_end]`);
  if (rows.length > SKETCH_MAX_POINTS) fail("too many points", "points", `${rows.length} > ${SKETCH_MAX_POINTS}`);
  const widths = new Set(rows.map((row) => Array.isArray(row) ? row.length : -1));
  if (widths.size > 1 || widths.has(-1)) fail("wrong shape", "points",
                                              "rows of different lengths, expected (N, 3): x, y, pen_end");
  if (rows.length && !widths.has(3)) fail("wrong shape", "points",
                                          `(${rows.length}, ${[...widths][0]}), expected (N, 3): x, y, pen_end`);
  rows.forEach((row, i) => row.forEach((v, j) => {
    if (typeof v !== "number") fail("not a number", `points[${i}][${j}]`, pythonType(v));
  }));
  if (!rows.length) fail("empty drawing");
  const strokes = [];
  let xs = [], ys = [];
  rows.forEach(([x, y, pen], i) => {
    if (!(Math.abs(x) <= SKETCH_FLOAT32_MAX && Math.abs(y) <= SKETCH_FLOAT32_MAX)) {
      fail("non-finite coordinate", "points", `point ${i}`);
    }
    if (pen !== 0 && pen !== 1) fail("pen_end not 0 or 1", "points", `point ${i}`);
    xs.push(x);
    ys.push(y);
    if (pen === 1) {
      strokes.push([xs, ys]);
      xs = [];
      ys = [];
    }
  });
  if (xs.length) strokes.push([xs, ys]);
  return strokes;
}

/** One sketch of a file: a JSON value -> {drawing: [[xs, ys], ...], label: the record's word or null}. */
function sketchOfValue(value, source, line) {
  if (Array.isArray(value)) return {drawing: checkedDrawing(value, source, line), label: null};
  if (value === null || typeof value !== "object") {
    throw sketchFileError(source, "record is not a JSON object", {line});
  }
  for (const [name, types] of Object.entries(SKETCH_FIELD_TYPES)) {
    const v = value[name];
    const type = pythonType(v);
    if (v !== undefined && v !== null && !types.includes(type) && !(type === "int" && types.includes("float"))) {
      throw sketchFileError(source, "wrong field type", {line, field: name,
                                                         detail: `${type}, expected ${types.join("/")}`});
    }
  }
  const label = typeof value.word === "string" ? value.word : null;
  if (!("drawing" in value) && "points" in value) return {drawing: checkedRows(value.points, source, line), label};
  if (!("drawing" in value)) throw sketchFileError(source, "missing field", {line, field: "drawing"});
  return {drawing: checkedDrawing(value.drawing, source, line), label};
}

/**
 * A sketch file's text -> {count, sketch(k)}: how many sketches it holds, and sketch k (0-based) as
 * {drawing, label, line}, or a thrown SketchFileError naming the file, the line and the field. A record is parsed
 * only when asked for, so a Quick, Draw! class file of 100,000 lines opens at once.
 */
function openSketchFile(name, text) {
  const lines = [];  // [start, end, line number] of each non-blank line
  let start = 0;
  for (let number = 1; start <= text.length; number++) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    if (/\S/.test(text.slice(start, end))) {
      lines.push([start, end, number]);
    }
    start = end + 1;
  }
  if (lines.length > 1 && /^\s*[[{]/.test(text)) {  // one JSON value over several lines (pretty printed)?
    let whole;
    try {
      whole = JSON.parse(text);
    } catch {
      whole = undefined;  // one record a line
    }
    if (whole !== undefined) return {count: 1, sketch: () => ({...sketchOfValue(whole, name, null), line: null})};
  }
  if (!lines.length) throw sketchFileError(name, "no sketch in the file (it is empty or blank)");
  return {
    count: lines.length,
    sketch(k) {
      const [a, b, number] = lines[k];
      let value;
      try {
        value = JSON.parse(text.slice(a, b));
      } catch (error) {
        throw sketchFileError(name, "malformed JSON", {line: number,
                                                       detail: String(error.message).split("\n")[0].slice(0, 80)});
      }
      return {...sketchOfValue(value, name, number), line: number};
    },
  };
}
