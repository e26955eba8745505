/*
 * The C side of src/image/isal.rs: ISA-L's streaming inflate behind four
 * functions that take plain pointers and lengths, so that Rust never
 * needs the layout of `struct inflate_state` (it differs between ISA-L
 * versions; this file is compiled against the installed header).
 */
#include <stdint.h>
#include <stdlib.h>
#include <isa-l/igzip_lib.h>

struct inflate_state *strata_isal_new(void)
{
	struct inflate_state *state = malloc(sizeof(*state));
	if (state != NULL) {
		isal_inflate_init(state);
		state->crc_flag = ISAL_GZIP;
	}
	return state;
}

void strata_isal_free(struct inflate_state *state)
{
	free(state);
}

/* Ready for the next gzip member of a multi-member stream. */
void strata_isal_reset(struct inflate_state *state)
{
	isal_inflate_reset(state);
	state->crc_flag = ISAL_GZIP;
}

/*
 * One step: inflates from in[0..in_len) into out[0..out_len), says how
 * much of each it used, and whether the member (with its trailer, whose
 * CRC and size ISA-L checks) is complete. Returns isal_inflate's code.
 */
int strata_isal_inflate(struct inflate_state *state, const uint8_t *in, size_t in_len,
			uint8_t *out, size_t out_len, size_t *consumed, size_t *produced,
			int *finished)
{
	uint32_t in_avail = in_len > UINT32_MAX ? UINT32_MAX : (uint32_t)in_len;
	uint32_t out_avail = out_len > UINT32_MAX ? UINT32_MAX : (uint32_t)out_len;
	state->next_in = (uint8_t *)in;
	state->avail_in = in_avail;
	state->next_out = out;
	state->avail_out = out_avail;
	int rc = isal_inflate(state);
	*consumed = in_avail - state->avail_in;
	*produced = out_avail - state->avail_out;
	*finished = state->block_state == ISAL_BLOCK_FINISH;
	return rc;
}
