from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = [1]

@test_case(points=None, hidden=False)
def test_q3_abab(bpe_train):
    from collections import Counter

    def count_pairs(ids):
        return dict(Counter(zip(ids, ids[1:])))

    def merge(ids, pair, new_id):
        out = []
        for x in ids:
            if out and (out[-1], x) == pair:
                out[-1] = new_id
            else:
                out.append(x)
        return out
    env = bpe_train.__globals__
    saved = (env.get('count_pairs'), env.get('merge'))
    env['count_pairs'], env['merge'] = (count_pairs, merge)
    try:
        got = bpe_train('abab', 5)
    finally:
        env['count_pairs'], env['merge'] = saved
    assert got == [((97, 98), 256), ((256, 256), 257)], f'bpe_train("abab", 5) gave {got}'

