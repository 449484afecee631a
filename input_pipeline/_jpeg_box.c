/* Decoding only a box of a JPEG frame (libjpeg-turbo's partial decompression).
 *
 * A training clip keeps one multi-scale crop box of each frame (REFERENCE.md section 10): 66-100 % of
 * the short side, so a third to a half of every decoded pixel is thrown away. libjpeg-turbo can skip
 * most of that work: jpeg_crop_scanline() limits the inverse DCT, upsampling and colour conversion to
 * the iMCU columns of the box, jpeg_skip_scanlines() skips the rows above it, and decoding stops after
 * its last row. The pixels are those of a full decode cut to the box, bit for bit: one extra iMCU
 * column is decoded on each side so that fancy (triangle) chroma upsampling at the box's edges sees the
 * same neighbours as in a full decode (without it the column next to the right edge differed by up to
 * 2 levels). tests/test_jpeg_box.py compares with Pillow's full decode.
 *
 * Python API (input_pipeline/jpeg.py wraps it):
 *   info(data) -> (width, height, components, colour space)   header only
 *   decode_box(data, x, y, w, h, out)                          out: writable uint8 (h, w, 3) or (h, w)
 * Errors raise ValueError with libjpeg's message; a file that ends early ("premature end of JPEG file",
 * a warning to libjpeg, which would pad it with grey) is an error as it is in Pillow. Other libjpeg
 * warnings (e.g. extraneous bytes) are ignored, as Pillow ignores them. The GIL is released while
 * decoding, so the loader's threads decode in parallel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  int truncated;
  char message[JMSG_LENGTH_MAX];
} error_mgr;

static void on_error(j_common_ptr cinfo) {
  error_mgr *err = (error_mgr *)cinfo->err;
  cinfo->err->format_message(cinfo, err->message);
  longjmp(err->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) ((error_mgr *)cinfo->err)->truncated = 1;
}

static void init_errors(struct jpeg_decompress_struct *cinfo, error_mgr *err) {
  memset(cinfo, 0, sizeof(*cinfo));  /* jpeg_destroy_decompress is safe even if creating it failed */
  memset(err, 0, sizeof(*err));
  cinfo->err = jpeg_std_error(&err->pub);
  err->pub.error_exit = on_error;
  err->pub.emit_message = on_message;
}

/* The header of ``data``; called after setjmp, so libjpeg's errors land in the caller's frame. */
static void read_header(struct jpeg_decompress_struct *cinfo, const Py_buffer *data) {
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, (const unsigned char *)data->buf, (unsigned long)data->len);
  jpeg_read_header(cinfo, TRUE);
}

static PyObject *jpeg_info(PyObject *self, PyObject *args) {
  Py_buffer data;
  if (!PyArg_ParseTuple(args, "y*:info", &data)) return NULL;
  struct jpeg_decompress_struct cinfo;
  error_mgr err;
  volatile int failed = 0;
  init_errors(&cinfo, &err);
  if (setjmp(err.jump)) {
    failed = 1;
  } else {
    read_header(&cinfo, &data);
  }
  PyObject *result = NULL;
  if (failed)
    PyErr_SetString(PyExc_ValueError, err.message);
  else
    result = Py_BuildValue("(iiii)", (int)cinfo.image_width, (int)cinfo.image_height, cinfo.num_components,
                           (int)cinfo.jpeg_color_space);
  jpeg_destroy_decompress(&cinfo);
  PyBuffer_Release(&data);
  return result;
}

static PyObject *jpeg_decode_box(PyObject *self, PyObject *args) {
  Py_buffer data, out;
  int x, y, w, h;
  PyObject *out_obj;
  if (!PyArg_ParseTuple(args, "y*iiiiO:decode_box", &data, &x, &y, &w, &h, &out_obj)) return NULL;
  if (PyObject_GetBuffer(out_obj, &out, PyBUF_STRIDES | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
    PyBuffer_Release(&data);
    return NULL;
  }
  int channels = out.ndim == 3 ? (int)out.shape[2] : 1;
  if (!(out.ndim == 2 || out.ndim == 3) || out.itemsize != 1 || (channels != 1 && channels != 3) ||
      out.shape[0] != h || out.shape[1] != w || out.strides[1] != channels ||
      (out.ndim == 3 && out.strides[2] != 1) || out.strides[0] < (Py_ssize_t)w * channels) {
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    PyErr_Format(PyExc_ValueError, "decode_box: out must be a writable uint8 array of shape (%d, %d, 3) or "
                 "(%d, %d) with contiguous rows", h, w, h, w);
    return NULL;
  }
  if (x < 0 || y < 0 || w < 1 || h < 1) {
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    PyErr_Format(PyExc_ValueError, "decode_box: bad box (%d, %d, %d, %d)", x, y, w, h);
    return NULL;
  }
  struct jpeg_decompress_struct cinfo;
  error_mgr err;
  JSAMPLE *volatile row = NULL;
  volatile int failed = 0, bad_box = 0, bad_channels = 0;
  Py_ssize_t stride = out.strides[0];
  init_errors(&cinfo, &err);
  Py_BEGIN_ALLOW_THREADS
  if (setjmp(err.jump)) {
    failed = 1;
  } else {
    read_header(&cinfo, &data);
    if (channels == 1 && cinfo.num_components != 1) {
      bad_channels = 1;  /* grey out of a colour JPEG: Pillow's L conversion is not libjpeg's */
    } else if ((JDIMENSION)x + (JDIMENSION)w > cinfo.image_width ||
               (JDIMENSION)y + (JDIMENSION)h > cinfo.image_height) {
      bad_box = 1;
    } else {
      cinfo.out_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
      jpeg_start_decompress(&cinfo);
      /* one iMCU of context on each side (fancy upsampling), then libjpeg aligns to iMCU columns */
      JDIMENSION imcu = (JDIMENSION)(cinfo.max_h_samp_factor * cinfo.min_DCT_scaled_size);
      JDIMENSION x0 = (JDIMENSION)x > imcu ? (JDIMENSION)x - imcu : 0;
      JDIMENSION x1 = (JDIMENSION)(x + w) + imcu < cinfo.output_width ? (JDIMENSION)(x + w) + imcu
                                                                       : cinfo.output_width;
      JDIMENSION width = x1 - x0;
      if (x0 > 0 || width < cinfo.output_width) jpeg_crop_scanline(&cinfo, &x0, &width);
      row = (JSAMPLE *)malloc((size_t)width * channels);
      if (row == NULL) ERREXIT(&cinfo, JERR_OUT_OF_MEMORY);
      if (y > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)y);
      JSAMPROW rows[1] = {row};
      const JSAMPLE *src = row + (size_t)((JDIMENSION)x - x0) * channels;
      for (int r = 0; r < h; r++) {
        if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) ERREXIT(&cinfo, JERR_INPUT_EOF);
        memcpy((char *)out.buf + (size_t)r * stride, src, (size_t)w * channels);
      }
      jpeg_abort_decompress(&cinfo);  /* the rows below the box are not needed */
    }
  }
  jpeg_destroy_decompress(&cinfo);
  free(row);
  Py_END_ALLOW_THREADS
  unsigned width = cinfo.image_width, height = cinfo.image_height;
  PyBuffer_Release(&data);
  PyBuffer_Release(&out);
  if (failed) {
    PyErr_SetString(PyExc_ValueError, err.message);
    return NULL;
  }
  if (bad_channels) {
    PyErr_SetString(PyExc_ValueError, "decode_box: a grey (h, w) box needs a one-component JPEG");
    return NULL;
  }
  if (bad_box) {
    PyErr_Format(PyExc_ValueError, "decode_box: box (%d, %d, %d, %d) is outside the %ux%u image", x, y, w, h,
                 width, height);
    return NULL;
  }
  if (err.truncated) {
    PyErr_SetString(PyExc_ValueError, "image file is truncated (premature end of JPEG file)");
    return NULL;
  }
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"info", jpeg_info, METH_VARARGS, "info(data) -> (width, height, components, libjpeg colour space)"},
    {"decode_box", jpeg_decode_box, METH_VARARGS,
     "decode_box(data, x, y, w, h, out): the box of the decoded JPEG into out, uint8 (h, w, 3) or (h, w)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpeg_box",
                                    "Decoding a box of a JPEG frame (libjpeg-turbo)", -1, methods};

PyMODINIT_FUNC PyInit__jpeg_box(void) {
  PyObject *m = PyModule_Create(&module);
  if (m != NULL) PyModule_AddIntConstant(m, "LIBJPEG_TURBO_VERSION_NUMBER",
#ifdef LIBJPEG_TURBO_VERSION_NUMBER
                                         LIBJPEG_TURBO_VERSION_NUMBER
#else
                                         0
#endif
  );
  return m;
}
