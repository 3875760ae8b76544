/* Stands in for an ONNX Runtime library too old for the `ort` crate: it
 * exports OrtGetApiBase, reports version 1.10.0 and offers no API. */
typedef struct {
    const void *(*GetApi)(unsigned version);
    const char *(*GetVersionString)(void);
} OrtApiBase;

static const void *get_api(unsigned version) { (void)version; return 0; }
static const char *version_string(void) { return "1.10.0"; }
static const OrtApiBase base = {get_api, version_string};

const OrtApiBase *OrtGetApiBase(void) { return &base; }
