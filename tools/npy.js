// Reads a little-endian C-order .npy file (float32, uint8, int8, int16, int32) for the Node tools
// that drive ONNX Runtime. Returns { shape, data } with data a typed array over the payload.
'use strict';
const fs = require('fs');

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(file + ': not an npy file');
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = header.match(/'descr': '([^']*)'/)[1];
  if (header.includes("'fortran_order': True")) throw new Error(file + ': Fortran order not supported');
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(',').filter(s => s.trim()).map(Number);
  const raw = buf.buffer.slice(buf.byteOffset + start + hlen, buf.byteOffset + buf.length);
  const T = { '<f4': Float32Array, '|u1': Uint8Array, '|i1': Int8Array, '<i2': Int16Array, '<i4': Int32Array }[descr];
  if (!T) throw new Error(file + ': dtype ' + descr + ' not supported (float32, uint8, int8, int16, int32)');
  return { shape, data: new T(raw) };
}

module.exports = { readNpy };
