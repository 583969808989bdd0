"""cocola: musical coherence (COCOLA) from Python.

The functions are the C++ library's own (the ``cocola`` command calls the same code), so the numbers are the CLI's:

    import cocola
    model = cocola.Model()                       # the shipped default model (or cocola.Model("my.safetensors"))
    score = model.score("mix.wav", "bass.wav")   # file paths, or numpy arrays with sr=
    emb = model.embed(audio, sr=44100)           # [windows, 512]
    feats = cocola.features(audio, sr=44100)     # [2, 64, T] (hpss) or frontend="mel": [1, 64, T]

Audio arrays are float32 or float64, mono ``[samples]`` or ``[channels, samples]`` (averaged), at any rate
(resampled to 16 kHz as the CLI does). Bad input raises ``cocola.Error`` (or TypeError/ValueError for a wrong array)
with the CLI's message.
"""
from ._cocola import (  # noqa: F401
    SAMPLE_RATE,
    Error,
    Generator,
    Model,
    default_model_path,
    eval_accuracy,
    features,
    get_threads,
    load_audio,
    set_threads,
)

__all__ = ["SAMPLE_RATE", "Error", "Generator", "Model", "default_model_path", "eval_accuracy", "features",
           "generate", "get_threads", "load_audio", "set_threads"]

_generators = {}


def generate(audio, sr=SAMPLE_RATE, *, prompt, steps=50, seed=0, model=None, vae=None, vocoder="neural",
             vocoder_model=None, judge=None, **options):
    """CompoNet generation, as ``cocola generate``: the stems ``prompt`` asks for ("in: piano; out: bass, drums"),
    given ``audio`` (array at ``sr`` Hz or a file path). Returns 16 kHz mono float32 of the input's length (with
    ``return_info=True``: ``(audio, info)``). Other options: guidance, eta, candidates, select, overlap, level
    ("auto": an accompaniment as loud as its input, "input", "keep"), progress, threads. The models (None: the
    shipped ones) are loaded once and kept for later calls; for several model sets hold a ``cocola.Generator``
    yourself."""
    key = (model, vae, vocoder, vocoder_model, judge)
    gen = _generators.get(key)
    if gen is None:
        gen = Generator(model, vae=vae, vocoder=vocoder, vocoder_model=vocoder_model, judge=judge)
        _generators.clear()  # one set of weights kept at a time
        _generators[key] = gen
    return gen.generate(audio, sr, prompt=prompt, steps=steps, seed=seed, **options)
