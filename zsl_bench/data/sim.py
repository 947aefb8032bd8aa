"""The simulated benchmark, generators v2, v3 and v4: localised attributes, irreducible error, confounding as an axis.

Spec: ``../shared/spec/SIMULATION.md``. ``generate(name, preset, seed)`` writes one dataset in the
real on-disk formats (``att_splits.mat``, ``image_index.npz``, ``w2v/<DIR>_attribute.npy``,
``features.h5``) plus ``ground_truth.npz``, ``sim.json`` and ``features_env_resampled.h5``, so
simulated and real data share the loader (``load_dataset(name, sim_preset=..., sim_seed=...,
sim_overrides=...)``). Everything it writes is labelled "simulated".

Versions (``GENERATORS``): ``"2.0"`` (``zsl-bench-sim/2.0``, this module), ``"3.0"``
(``zsl-bench-sim/3.0``, this module: v2's model with a larger, recalibrated AWA2; "GENERATOR V3"
below), ``"4.0"`` (``zsl-bench-sim/4.0``, this module: v3 with two calibrated knobs per dataset and
semantics source, the noise scale and the part kernel width, so that the mean of the classic
baselines and DAZLE each land within 3 points of their published accuracy; "GENERATOR V4" below) and ``"1.2"`` (``zsl-bench-sim/1.2``,
``sim_v1``: bit-identical to the 1.2 release, its calibration record is in that module).
``DEFAULT_GENERATOR`` is ``"4.0"`` since ``results/`` was regenerated under it (``"3.0"`` and ``"2.0"``
before it, each from its own regeneration or calibration record);
``generate(..., generator="1.2")`` selects v1, ``--set sim.generator=2.0`` v2. Off AWA2's small and
full presets v3 writes v2's data bit for bit, and studies treat results of either as standing for
both (``data_version``); v4 writes v2's data on the tiny preset only. The default cache directory is
keyed by the version, the semantics source (the digest of the real files read, ``real_files.json``)
and the overrides (``cache_root``), so two settings never share a directory.

Model v2 (SIMULATION.md points 1-7; knobs are ``SimParams`` fields):

1. Semantics. Real when ``<data_root>/<DIR>/att_splits.mat`` exists (``small``/``full``), as in v1.
   Otherwise generated so that their statistics match the real ones (``SEMANTIC_TARGETS``, measured
   on the published files by ``benchmarks/sim_semantic_stats.py``): each attribute group has
   ``variants_per_group`` sparse part variants; classes come in families of ``classes_per_family``
   sharing a parent template (one variant per group), each class re-draws a group's variant with
   probability ``family_mutation``, so unseen classes are new combinations of parts seen in
   training; then ``original = 100 · relu(parts + base · μ + noise · ε)`` with μ per-attribute base
   rates. ``base``, ``noise`` and the variants' fraction of active attributes are fitted per
   dataset (coordinate bisection on fixed random draws, no method involved) to the unseen mean
   cosine, the median nearest-class cosine and the attribute density. FLO: the semantics are a
   1,024-d embedding of the class's visual latents (a fixed random projection, plus a common
   component and noise fitted the same way), no word vectors, as the real FLO; the images render
   the latents (``latent_parts`` parts of ``latent_dim`` dims), not the 1,024 embedding dims. With
   FLO's real file, the latents are its top principal components (both signs). ``tiny`` generates
   unfitted semantics (independent classes, as v1).
2. Appearance: prototype p_i = unit(w2v_share·unit(W v_i) + (1−w2v_share)·unit(ε_i)) (as v1). Group
   appearance g_bg = Σ_{i∈g} s_bi p_i / nn (nn: the median nearest-class distance of the class
   strengths, so one set of noise levels means the same on every dataset) + a fixed per-(class,
   group) look offset (``class_look``) + a per-(image, group) noise vector coherent over the part
   (``part_noise``); both sizes are relative to the typical group appearance norm.
3. Layout: group g has a fixed centre, shifted per (class, group) (``class_shift``); per image the
   whole layout is scaled about the grid centre (log-normal, ``pose_scale``) and shifted
   (``pose_shift``), each part jitters (``jitter``) and is hidden with probability ``occlusion``;
   the kernel width is ``kernel_width``·side·scale·lognormal(``kernel_jitter``) per image.
4. Instances: image strengths = class strengths + a fixed class-level ``class_gap`` (the published
   attributes describe a class imperfectly); each part is mixed toward the same part of a random
   other class of its side (seen / unseen) by U(0, ``part_mix``); plus N(0, ``strength_noise``),
   clipped at 0. So even an oracle that reads an image's true latent strengths confuses classes
   (``oracle_accuracy``).
5. Features: region r of image b = Σ_g vis_bg k_b(r; c_bg) g_bg + clutter + context
   + ``image_noise``·ξ_b + ``region_noise``·ξ_br, then ReLU. Clutter: Poisson(``clutter``) (at most
   4) distractor blobs, each a random attribute prototype of amplitude ``clutter_strength`` × the
   typical part norm, placed at a random cell away from the visible parts.
6. Confounder: a pool of ``environments`` environments; each looks like a mix of 2-4 attribute
   prototypes plus its own component (share ``env_own``). Each seen class prefers one environment
   of the "seen" two thirds of the pool, each unseen class one of the remaining third. A seen
   image (trainval AND test-seen: an i.i.d. split) shows its class's environment with probability
   ``rho``, else a uniform one. An unseen image shows, with probability ``rho``, its own class's
   environment (with probability ``unseen_shift``: a shifted distribution, environments no seen
   class prefers) or the preferred environment of a random seen class (1 − ``unseen_shift``), else
   a uniform one. The context term ``a · e_env · m_b(r)`` falls on the background with ``bleed``
   onto the object: m = (1 − obj) + bleed · obj, obj = max_g vis·k. ``context_strength`` is the
   context-to-part energy ratio E‖context term‖² / E‖part term‖² (over a fixed probe of images;
   the part term without its per-image noise), so it means the same on every dataset. Context
   draws use their own random stream: ``rho``, ``unseen_shift`` and ``context_strength`` change
   nothing else, and at ``context_strength`` 0 the features are exactly those without context.
   ``features_env_resampled.h5`` re-renders every image with the same latents and noise draws but
   an environment drawn uniformly, independent of class and split.
7. ``ground_truth.npz``: v1's keys (part centres (N, G, 2), visibility, ``context`` = environment,
   attribute→group map, group names, grid side, labels) plus ``environment``,
   ``environment_resampled`` (N,), ``context_mask`` (N, R) (m before the amplitude), the image and
   class latent strengths, the render group map, kernel widths and ``context_amplitude`` a.

What a model that relies on context should suffer (written before anything was measured): with
``rho`` > 0, its accuracy under environment resampling drops, more for larger ``rho`` and
``context_strength``; at ``rho`` = 0 or strength 0 it drops ~0 (environments carry no class
information). Test-seen accuracy S drops less than U on the factual store, because test-seen keeps
the training correlation (a context shortcut is right there), while unseen classes show environments
that the shortcut maps to the wrong classes; on the resampled store, S loses what the shortcut gave
it. With ``unseen_shift`` 0 unseen images wear seen classes' environments, which pulls GZSL
predictions toward seen classes (U down); with 1 they wear environments never seen in training,
whose attribute resemblance misleads attribute predictions instead. A model reading only object
cells shows no reliance up to the ``bleed`` share; one reading only background cells shows reliance
growing with ``rho`` (``tests/test_sim_v2.py`` checks both with nearest-class-mean probes).

Defaults: ``rho`` = 0 and ``context_strength`` = 0: the confounder is off in the main table and in
calibration, so it is an experimental axis and not a hidden difficulty term (uncorrelated context
on the background is noise that only pooled features feel); ``unseen_shift`` 0.5. The other knobs
are ``DEFAULTS`` with the calibrated values of ``CALIBRATED`` per (dataset, semantics source) on top.

CALIBRATION RECORD (v2, 2026-11-30; the knobs, the rule and this text were fixed before MSDN,
MSDN++ or TransZero was run on v2 data: their unit tests (pass/fail, tiny preset) and later the main
job (MSDN++) ran while the last AWA2 rows and FLO's DAZLE and data seed 1 rows below were measured;
no knob changed after, and none was informed by them). Methods: the classic
baselines and DAZLE only; preset ``small``; ``rho`` 0, ``context_strength`` 0; targets: published
real-data ZSL accuracy (``../shared/reference/published_results.csv``, Xian et al. TPAMI 2018
tables; DAZLE "recalled").
Knobs moved: background ``clutter`` 0 everywhere (with the default clutter and a context of
strength 0.25 at rho 0, the classic baselines on CUB lost 12-17 points and DAZLE none, so the
background set the attention gain instead of the data) and one noise scale s per cell
(``noise_level(s)``: every ``NOISE_KNOBS`` field at s x its default). Rule: s minimises
(mean classic gap)^2 + (DAZLE gap)^2, the classic gap averaged over ESZSL, SAE, ALE, DeViSE and
SJE without cells below 3x chance, found from probes at s = 0.6 and 1.0 (ESZSL, SAE, ALE), one
round of all six at a first guess, and linear interpolation; FLO has no published number of a
calibration method and takes CUB's s. Probes and record: data seed 0 (record: 0 and 1), training
seed 0. Achieved, ZSL mean ± sd over data seeds 0 and 1 / published::

    dataset semantics   s            eszsl           sae           ale        devise           sje         dazle  classic gap  DAZLE gap
    cub     generated   0.99  45.4± 3.4/53.9  42.9±10.0/33.3  46.4± 8.8/54.9  38.8± 4.0/52.0  38.0± 0.8/53.9  66.7± 4.9/66.0    -7.3        +0.7
    cub     real        0.78  57.7± 5.2/53.9  44.6± 7.9/33.3  54.2± 0.8/54.9  42.7± 0.1/52.0  24.6± 0.6/53.9  65.5± 1.0/66.0    -4.8        -0.5
    sun     generated   1.22  57.5± 4.7/54.5  37.6±12.8/40.3  50.7± 1.8/58.1   1.5± 0.2/56.5  12.9±13.6/53.7  65.6± 3.5/59.4   -12.0        +6.2
    sun     real        1.14  54.4± 3.5/54.5  48.8± 0.2/40.3  59.4± 1.2/58.1   1.9± 0.4/56.5   4.0± 2.2/53.7  66.9± 2.8/59.4    +3.2        +7.5
    awa2    generated   0.62  70.2± 5.3/58.6  67.6±16.6/54.1  54.5±21.8/62.5  61.4± 4.9/59.7  63.4± 6.8/61.9  60.6±12.2/67.9    +4.1        -7.3
    awa2    real        0.55  89.5± 3.9/58.6  74.8± 4.4/54.1  67.0± 5.3/62.5  66.6± 4.9/59.7  74.8± 1.4/61.9  56.1± 1.6/67.9   +15.2       -11.8
    flo     generated   0.99  58.1± 6.2/   -  51.4± 2.3/   -  59.0± 6.0/   -  48.8± 5.7/   -  52.1± 0.5/   -  52.8±11.0/   -       –           –
    flo     real        0.78  59.8± 8.1/   -  26.8± 7.4/   -  55.5±12.7/   -  54.1±10.4/   -  59.9±10.8/   -  55.1±13.6/   -       –           –

    (each cell: mean ± sd over data seeds / published; s: the noise scale; the gaps are the rule's
    inputs. FLO: no targets; AWA2: see below)

Re-measured after a fidelity fix (2026-11-30, knobs unchanged): SJE on CUB and SUN and DeViSE on
AWA2 now standardise their input features as mvp18 validated them (``method.standardize_input``;
before: L2). The same command with ``--methods devise,sje`` replaced their records; every other cell
of theirs reproduced to the digit. DeViSE / SJE and the classic gap they give (SJE on SUN is now
above 3x chance and counts)::

    dataset semantics        devise           sje  classic gap (was)
    cub     generated   38.8± 4.0/52.0  39.8± 4.2/53.9   -6.9 (-7.3)
    cub     real        42.7± 0.1/52.0  48.8± 4.5/53.9   +0.0 (-4.8)
    sun     generated    1.5± 0.2/56.5  43.8± 1.8/53.7   -4.3 (-12.0)
    sun     real         1.9± 0.4/56.5  52.6± 2.6/53.7   +2.2 (+3.2)
    awa2    generated   46.9± 6.7/59.7  63.4± 6.8/61.9   +1.2 (+4.1)
    awa2    real        44.0± 3.9/59.7  74.8± 1.4/61.9  +10.6 (+15.2)
    flo     generated   48.8± 5.7/   -  54.8± 5.7/   -      –
    flo     real        54.1±10.4/   -  55.9± 5.5/   -      –

The knobs were not chosen again: MSDN, MSDN++ and TransZero have run on them, so a new choice is a
new generator version (the rule's choice with these numbers was not computed).

Command (records in ``benchmarks/sim_calibration_v2.jsonl``; CI re-runs its CUB ESZSL and SAE runs)::

    python benchmarks/calibrate_sim.py --generator 2.0 --datasets all --semantics generated,real \
        --methods eszsl,sae,ale,devise,sje,dazle --data-seeds 0,1 --seeds 0 --out OUT

What the record says and leaves open:
- ESZSL, ALE, SAE and DAZLE land within a few points on average; single runs move by up to ~10
  points with the data seed (ESZSL's validated regulariser flips between neighbouring grid points:
  CUB generated data seed 0 gives 43.0 at s = 0.99 and 54.6 at s = 1.0). SAE sits above its
  published number (its published SAE row is far below the other baselines; here it is not).
- DeViSE sits 10 points below its target on CUB and 13-16 on AWA2 (there with mvp18's AWA2 setting,
  std features and a margin of 150, validated on 2048-d ResNet features; the simulated ones are
  256-d), and **at chance on SUN** (both sources): its SUN setting (raw features, margin 3) assumes
  ResNet-101's feature scale (the simulated features are ~100x smaller, docs/FIDELITY.md), so every
  class violates the margin. It is excluded from the rule on SUN and reported as it is. SJE's former
  SUN collapse (ZSL 3-22) was our L2 input where mvp18 standardises: with std features it is 44 / 53
  against 53.7. SJE on CUB stays 5-14 points low.
- AWA2 misses the rule's balance: DAZLE sits below the classic baselines on the simulated AWA2
  (real: ~8 points above), so the rule leaves the classics high (real semantics: +15) and DAZLE
  low (-12). Its 10 unseen classes also give the largest sds; ESZSL on real semantics reaches 92.25 on
  data seed 1, above the issue's ceiling of 90 (v2's AWA2 is not the default: 3.0, then 4.0, replace it). AWA2 needs a knob that moves
  attention relative to pooled features; none of the current ones does (clutter, tried on CUB,
  hurt both). [Later: the cause is the size of the small AWA2, not a missing knob; see
  "GENERATOR V3".]
- LATEM (not in the rule, which was fixed before it was measured) was added to the record on
  2026-11-30 with the same command and ``--methods latem`` (16 runs, 49-680 s each on a shared core),
  ZSL mean ± sd over data seeds 0 and 1 / published: CUB 39.9 ± 12.6 / 49.3 (generated), 42.6 ± 0.3
  (real); SUN 44.6 ± 0.6 / 55.3, 47.6 ± 1.0; AWA2 58.5 ± 8.5 / 55.8, 56.6 ± 2.2; FLO 53.0 ± 3.2 and
  46.0 ± 7.1 (no target). So 7-11 points low on CUB and SUN, on target on AWA2, like DeViSE and SJE
  on CUB: the per-image ranking methods sit below the closed-form ones there.
- H is not a target: published classic H comes with seen-biased scores (U << S) that the simulated
  data, whose seen and unseen images are equally hard, does not reproduce.

GENERATOR V3 (``zsl-bench-sim/3.0``, 2026-11-30; the change, the rule's probes and this text were
fixed before MSDN, MSDN++ or TransZero ran on v3 data, and no knob was chosen from their numbers.
Unlike v2's, this choice was not blind to them: their v2 AWA2 results were in ``results/`` when v3
was made (MSDN 89.2, MSDN++ 88.5, one seed of each above 90, i.e. at the issue's ceiling), so the
decision to revisit AWA2 was made knowing them. The change itself answers DAZLE's under-training and AWA2's
variance (below); the new size, 100 images per class, was set once and not chosen by a rule; the
noise scales were chosen by v2's rule from the classic baselines and DAZLE only.)
Why: v2's AWA2 (``small``) has 24 images per class, so 19 training images per seen class: 760
trainval images against the real 23,527. DAZLE's official schedule counts epochs (20 epochs of
50-image steps), so it made ~300 optimiser steps there against ~9,400 on the real AWA2 (CUB: 480
against 2,822; SUN 5,160 against 20,640): it was under-trained, which is why it sat below the
classic baselines. Measured on v2, data seed 0, training seed 0, ``zsl-bench run dazle --datasets
awa2 --sim --seeds 0 --set train.epochs=E`` (``--data-root ../shared/data/zsl`` for real
semantics): generated semantics ZSL 69.3 (E = 20, the preset), 91.3 (60), 92.6 (180); real
semantics 57.3 (20), 69.5 (60). The same on CUB: 70.2 (20) -> 71.8 (60), converged. ESZSL and SAE
are closed-form; ALE, DeViSE, SJE and LATEM train up to 100 epochs with early stopping on validation.
What changed: AWA2's ``small`` preset has 100 images per class (``SCALE_V3``: 80 trainval images
per seen class, 3,200 in all, ~1,280 DAZLE steps; unseen test images stay 80 per class), and
AWA2's two noise scales were chosen again by v2's rule (probes at v2's s, 0.8 and 1.0, data seed 0,
training seed 0; piecewise-linear interpolation of the two gaps; minimum of their squares).
AWA2's ``full`` preset (the real image counts) takes the new noise scales, as v2's took its own.
Everything else is v2's: on CUB, SUN and FLO, and on AWA2's ``tiny`` preset, v3 writes v2's data
bit for bit (``tests/test_sim_versions.py``), and v2's record above holds there.
Probes (v2 with v3's AWA2 size: ``python benchmarks/calibrate_sim.py --datasets awa2 --semantics
real,generated --data-seeds 0 --seeds 0 --methods eszsl,sae,ale,devise,sje,dazle --set
awa2.images_per_class=100 --set awa2.max_images=5000 --noise-scale awa2=S``), gaps in ZSL points::

    semantics    s     classic gap  DAZLE gap
    real         0.55     +13.5       +12.3
    real         0.80      +3.9        +4.0
    real         1.00      -3.9       -11.3
    generated    0.62      +5.4       +20.5
    generated    0.80      -7.5       +11.2
    generated    1.00     -18.3        -0.4

Chosen: s = 0.86 (real; the interpolated gaps +1.5 / -0.8) and 0.84 (generated; -9.6 / +8.9).
Record (``python benchmarks/calibrate_sim.py --generator 3.0 --datasets awa2 --semantics
generated,real --methods eszsl,sae,ale,devise,sje,dazle --data-seeds 0,1 --seeds 0 --out OUT``; runs
in ``benchmarks/sim_calibration_v3.jsonl``, CI re-runs its generated ESZSL and SAE runs), ZSL
mean ± sd over data seeds 0 and 1 / published::

    dataset semantics   s            eszsl           sae           ale        devise           sje         dazle  classic gap  DAZLE gap
    awa2    generated   0.84  62.2± 3.0/58.6  50.6±16.6/54.1  61.1± 8.7/62.5  47.6± 4.5/59.7  57.9± 3.4/61.9  74.1± 2.7/67.9    -3.5        +6.2
    awa2    real        0.86  69.5± 2.7/58.6  59.8± 4.1/54.1  58.8± 2.8/62.5  51.9± 0.6/59.7  59.0± 0.9/61.9  61.6±10.6/67.9    +0.4        -6.3

LATEM (not in the rule; the same command with ``--methods latem``, 116-165 s a run on a shared core):
generated 57.5 ± 4.2, real 55.2 ± 1.1 / 55.8 (v2: 58.5 ± 8.5, 56.6 ± 2.2).
Against v2's AWA2 (classic gap / DAZLE gap, and the mean |ZSL gap| over the six methods):
generated +1.2 / -7.3 (9.1) -> -3.5 / +6.2 (5.2); real +10.6 / -11.8 (16.1) -> +0.4 / -6.3 (6.2).
What v3 leaves open: DAZLE's gain over the classic mean is +18.2 on generated semantics and +1.8 on
real ones (published: +8.5), and DAZLE on real semantics moves by 15 points with the data seed
(69.1, 54.1), SAE on generated ones by 24 (38.9, 62.4); DeViSE stays 8-12 points low (its AWA2
margin was validated at 2048-d). An AWA2 training unit costs ~3-4x v2's (DAZLE 77 s against 28 s).
Frozen: these knobs were committed (17cf3cd) before MSDN, MSDN++ or TransZero ran on v3 data; their
first v3 runs (``results/``, regenerated under v3 as the default) came after and changed nothing here.

TRAINING SEEDS (2026-12-01; knobs unchanged, nothing chosen again). The records above used training
seed 0 only. The same commands with ``--seeds 1,2`` (v2: CUB, SUN, FLO; v3: AWA2, which 3.0 writes
differently; v2's own AWA2 stays at seed 0) added two training seeds per run; the jsonl files hold
every run, and the summary of ``calibrate_sim.py`` now prints the rule's inputs (the ``rule`` lines)
and splits each spread into its data-seed and training-seed parts. LATEM (not in the rule) has
training seeds 0-2 on CUB and AWA2 and seed 0 on SUN and FLO (plus one seed-1 run on SUN; a SUN run
takes 330-390 s). ZSL
mean ± sd over 2 data seeds x 3 training seeds / published (3.0's data: v2 on CUB, SUN, FLO, v3 on
AWA2), the rule's gaps, and DAZLE's gain over the classic mean beside the published gain::

    dataset semantics            eszsl             sae             ale          devise             sje           dazle           latem  classic  DAZLE  DAZLE gain (published)
    cub     generated   45.4±2.6/53.9   42.9±7.8/33.3   45.4±6.2/54.9   38.0±2.1/52.0   40.5±3.2/53.9   68.9±3.1/66.0  37.7±10.1/49.3      -7.2   +2.9  +26.4 (+16.4)
    cub     real        57.7±4.1/53.9   44.6±6.1/33.3   55.8±3.2/54.9   43.2±0.8/52.0   48.7±4.1/53.9   65.4±2.1/66.0   35.4±9.5/49.3      +0.4   -0.6  +15.4 (+16.4)
    sun     generated   57.5±3.6/54.5   37.6±9.9/40.3   50.8±1.7/58.1    1.5±0.2/56.5   44.1±0.9/53.7   64.7±2.9/59.4   45.0±0.8/55.3*     -4.2   +5.3  +17.2 (+7.8)
    sun     real        54.4±2.7/54.5   48.8±0.2/40.3   59.7±1.0/58.1    1.7±0.4/56.5   51.1±2.5/53.7   67.6±1.7/59.4   47.6±1.0/55.3*     +1.8   +8.2  +14.1 (+7.8)
    flo     generated      58.1±4.8/-      51.4±1.8/-      58.6±4.6/-      51.4±3.7/-      56.5±5.1/-      53.1±8.7/-      53.0±3.2/-*        -      -  -
    flo     real           59.8±6.3/-      26.8±5.8/-      55.7±9.5/-      53.2±7.7/-      56.0±4.0/-     52.3±10.3/-      46.0±7.1/-*        -      -  -
    awa2    generated   62.2±2.3/58.6  50.6±12.9/54.1   61.0±6.7/62.5   45.4±6.6/59.7   57.7±3.9/61.9   72.7±2.4/67.9   53.6±4.5/55.8      -4.0   +4.8  +17.3 (+8.5)
    awa2    real        69.5±2.1/58.6   59.8±3.1/54.1   58.5±2.4/62.5   51.8±0.4/59.7   58.0±1.5/61.9   61.2±6.4/67.9   55.4±2.7/55.8      +0.2   -6.7  +1.6 (+8.5)

    (* LATEM: fewer than 3 training seeds; FLO: no published target; classic and DAZLE: the rule's gaps)

Commands (with a copy of the record's jsonl as ``OUT/calibration.jsonl`` only the missing runs run;
a fresh ``OUT`` runs them all)::

    python benchmarks/calibrate_sim.py --generator 2.0 --datasets cub,sun,flo --semantics generated,real \
        --methods eszsl,sae,ale,devise,sje,dazle --data-seeds 0,1 --seeds 0,1,2 --out OUT
    python benchmarks/calibrate_sim.py --generator 3.0 --datasets awa2 --semantics generated,real \
        --methods eszsl,sae,ale,devise,sje,dazle,latem --data-seeds 0,1 --seeds 0,1,2 --out OUT
    (LATEM on v2: the first with --datasets cub --methods latem)

What the training seeds show:
- ESZSL and SAE are closed-form: every training seed gives the same number, so their sd is the data
  seeds'. For the trained methods a training seed moves a run by (sd within a data seed) ALE 0.2-2.4,
  DeViSE 0.3-1.9 (4.2 on FLO generated; 7.1 on AWA2 generated, one run at 32.8), SJE 0.4-2.2 and
  DAZLE 1.4-3.5 points; the data seed mostly moves them more (sd of the data-seed means up to 12.3
  for ALE, 16.6 for SAE, 12.7 for DAZLE, all on FLO real or AWA2 generated). LATEM is the exception:
  its training seeds spread by 10-11 points on CUB (runs from 19.8 to 48.8), 5 on AWA2 generated.
- Against training seed 0 alone the rule's gaps moved by at most 2.2 points (DAZLE on CUB generated,
  +0.7 -> +2.9; AWA2 generated +6.2 -> +4.8), so the frozen choice stands as it was made. The cells
  furthest from their targets are DAZLE on SUN real (+8.2), the classic mean on CUB generated (-7.2)
  and DAZLE on AWA2 real (-6.7); every other gap is within 6 points.
- DAZLE's gain over the classic mean is larger than published on CUB generated (+26.4 against +16.4),
  SUN (+17.2 and +14.1 against +7.8) and AWA2 generated (+17.3 against +8.5), and smaller on AWA2
  real (+1.6). One noise scale per cell sets the level, not the gain: the rule balanced the two gaps.
- A probe for a later version (not a knob of 3.0; ``python benchmarks/calibrate_sim.py --generator
  2.0 --datasets D --semantics generated --methods eszsl,ale,dazle --data-seeds 0 --seeds 0 --set
  D.kernel_width=W``, the part kernel width, default 0.12), ZSL of ESZSL / ALE / DAZLE:
  W = 0.12 / 0.2 / 0.3: CUB 43.0 / 52.6 / 70.2, 58.0 / 56.4 / 66.4, 59.6 / 58.2 / 63.0 (DAZLE's gain
  over the two +22.4, +9.2, +4.1); SUN 60.8 / 51.9 / 63.1, 67.8 / 56.7 / 61.4, 67.8 / 56.4 / 61.7
  (+6.7, -0.8, -0.4).
  Wider parts help the pooled baselines and cost DAZLE its localisation, so the kernel width sets
  the attention gain that the noise scale cannot: a rule with both knobs per cell can meet the classic
  and DAZLE targets together. That is a new generator version (recalibration and every result rerun).
- The methods under study are not at the ceiling on real semantics either (checked after the record,
  informing nothing; data seed 0, training seed 0, ``zsl-bench run M --datasets cub,awa2,sun --sim
  --data-root ../shared/data/zsl --seeds 0``): MSDN++ ZSL 68.0 / 69.4 / 64.7, MSDN 67.6 / 74.1 / 64.7
  (CUB / AWA2 / SUN).

GENERATOR V4 (``zsl-bench-sim/4.0``, 2026-12-01). Why: one noise scale per cell sets how hard every
method finds the data, not how much DAZLE's region attention gains over the pooled classic baselines,
so v2's rule balanced two gaps it could not close together (3.0's record above: classic / DAZLE gaps
up to -7.2 / +8.2, DAZLE's gain over the classic mean +26.4 against a published +16.4 on CUB with
generated semantics, +1.6 against +8.5 on AWA2 with real ones). v4 adds a second knob per cell, the
part kernel width (``kernel_width``, a fraction of the grid side; v2 and v3: 0.12 everywhere): wider
parts help pooled features and blur what attention localises (the probe in "TRAINING SEEDS").
Everything else is v3's (model, sizes, AWA2's 100 images per class); on the ``tiny`` preset, where
calibrated knobs do not apply, v4 writes v2's data bit for bit (``tests/test_sim_versions.py``).
Not blind: v4 was made after MSDN's, MSDN++'s and TransZero's v2 and v3 results were in ``results/``
(and after the real-semantics check above). No number of theirs entered the rule, which reads the
classic baselines and DAZLE only (``calibrate_sim.py`` refuses the others), and the knobs were
committed before any of the three ran on v4 data.
The rule (``benchmarks/calibrate_sim.py --probes``, ``rule_choice``), per (dataset, semantics) cell:
a probe is a (noise scale s, kernel width w) with ESZSL, SAE, ALE, DeViSE, SJE and DAZLE on data
seeds 0 and 1 and training seed 0; its gaps are v2's rule's (classic gap: the mean over the classic
five of mean ZSL - published, leaving out methods below 3x chance; DAZLE gap). Start at v3's knobs
(s, 0.12); a cell within 1 point there keeps them (CUB, real semantics). Otherwise two first probes
at one width, wider than 0.12 where DAZLE's gain over the classic mean was above the published gain
and narrower where it was below (the widths were picked from five exploratory runs on data seed 0,
kept in the probes file), at v3's s and at a second s. Then plane steps: a least-squares plane for
each gap over all of the cell's probes, solved for both gaps zero, clipped to s in [0.5, 1.5] and
w in [0.06, 0.4] (under 0.06 a part is under half a cell of the small preset's 7 x 7 grid), rounded
to 0.01, and probed; until a probe has both gaps within 1 point or the solution repeats a probe.
The choice: the probe with the smallest larger |gap|, of all probes on v4's data. FLO (no published
number of a calibration method) takes CUB's knobs per source, as in v2. The probes (``python
benchmarks/calibrate_sim.py --probes benchmarks/sim_calibration_v2.jsonl
benchmarks/sim_calibration_v3.jsonl benchmarks/sim_calibration_v4_probes.jsonl --semantics
generated,real --data-seeds 0,1 --seeds 0``, which prints them and each cell's choice; the probes ran
as generator 2.0 (CUB, SUN) or 3.0 (AWA2) with ``--noise-scale D=S --set D.kernel_width=W``, which is
v4's data at those knobs, ``on_model``; ``tests/test_calibrate_sim.py`` checks that the knobs are
the rule's choice over them), gaps in ZSL points::

    dataset semantics     s     w  classic  DAZLE  DAZLE gain (published)
    awa2    generated  0.84  0.12    -3.5   +6.2   +18.2 (+8.5)
    awa2    generated  0.84  0.30    +1.3   +2.9   +10.1 (+8.5)
    awa2    generated  0.87  0.35    +0.1   -0.8    +7.6 (+8.5)  <- chosen
    awa2    generated  0.95  0.30    -7.6   -4.5   +11.7 (+8.5)
    awa2    real       0.50  0.06    +3.8   +1.1    +5.9 (+8.5)
    awa2    real       0.51  0.06    +3.1   +0.5    +6.0 (+8.5)
    awa2    real       0.52  0.06    +1.4   +0.1    +7.3 (+8.5)  <- chosen
    awa2    real       0.54  0.06    +1.4   -0.8    +6.4 (+8.5)
    awa2    real       0.70  0.08    +1.0   -3.0    +4.6 (+8.5)
    awa2    real       0.86  0.08    -7.3   -9.5    +6.3 (+8.5)
    awa2    real       0.86  0.12    +0.4   -6.3    +1.8 (+8.5)
    cub     generated  0.98  0.15    -0.4   -0.2   +16.6 (+16.4)  <- chosen
    cub     generated  0.99  0.12    -6.9   +0.7   +24.0 (+16.4)
    cub     generated  0.99  0.17    +2.2   -1.8   +12.4 (+16.4)
    cub     generated  1.10  0.17    -5.2   -9.7   +11.9 (+16.4)
    cub     real       0.78  0.12    +0.0   -0.5   +15.9 (+16.4)  <- chosen
    sun     generated  1.22  0.12    -4.3   +6.2   +18.2 (+7.8)
    sun     generated  1.22  0.16    +3.1   +5.6   +10.2 (+7.8)
    sun     generated  1.32  0.19    -0.6   -0.4    +8.0 (+7.8)  <- chosen
    sun     generated  1.33  0.18    -2.0   +0.0    +9.8 (+7.8)
    sun     generated  1.33  0.19    -1.4   -0.8    +8.3 (+7.8)
    sun     generated  1.40  0.16    -7.7   -3.4   +12.0 (+7.8)
    sun     real       1.14  0.12    +2.2   +7.5   +13.1 (+7.8)
    sun     real       1.14  0.20    +7.4   +7.4    +7.8 (+7.8)
    sun     real       1.30  0.20    +0.1   -0.8    +6.9 (+7.8)  <- chosen

Neighbouring probes differ by what their step predicts and little more (SUN generated at s 1.32 and
1.33: 0.8 and 0.4 points, of which the fitted planes give ~0.5 for a 0.01 step).
The width moves the gain as the first probe said: wider on CUB (0.15), SUN (0.19, 0.20) and AWA2 with
generated semantics (0.35), narrower on AWA2 with real semantics (0.06, the edge of the box), where
DAZLE's gain stays below the published one (+7.3 against +8.5).
A review fix changed one knob. As first run (7b8bf76), ``rule_choice`` counted the five exploratory
data-seed-0 runs, whose knobs equal two probes', a second time: SUN real at (1.14, 0.20) read +6.7 /
+6.3 instead of +7.4 / +7.4, and AWA2 real at (0.86, 0.08) -7.4 / -7.2 instead of -7.3 / -9.5. That
moved AWA2 real's first plane step to (0.54, 0.06) (corrected: (0.52, 0.06)); no other cell's path
or choice changed. Now a run is counted once (``tests/test_calibrate_sim.py``); (0.52, 0.06) was
probed afterwards and is the choice by 0.01 point (larger |gap| 1.36 against 1.38 at (0.54, 0.06):
the two are equal within a probe's noise, and the rule decides). AWA2 real's knobs moved from (0.54,
0.06) to (0.52, 0.06) and its rows of the record below were run again; the first ones, at (0.54,
0.06), gave classic / DAZLE gaps +1.7 / -1.1 (gain +5.7) over the same seeds (runs in git at
b046af0); at (0.52, 0.06) they are +2.7 / -0.1 (below): the probes' 0.01-point preference does not
survive the record's seeds, and the rule's choice stands as made. MSDN, MSDN++ and TransZero had
not run on AWA2 with real semantics under v4: the checks
below use generated semantics.

V4 RECORD (the knobs above: frozen in 7b8bf76 before the record ran, AWA2 real's moved by the review
fix above; ``python benchmarks/calibrate_sim.py --generator 4.0 --datasets all --semantics generated,real --methods
eszsl,sae,ale,devise,sje,dazle --data-seeds 0,1 --seeds 0,1,2 --out OUT``, runs in
``benchmarks/sim_calibration_v4.jsonl``; CI re-runs its CUB generated ESZSL and SAE runs and checks
this table against the runs; LATEM, not in the rule, is not in this record). ZSL mean ± sd over 2 data
seeds x 3 training seeds / published, the rule's gaps, and DAZLE's gain over the classic mean beside
the published gain::

    dataset semantics            eszsl             sae             ale          devise             sje           dazle           latem  classic  DAZLE  DAZLE gain (published)
    cub     generated   55.0±2.6/53.9   50.9±5.1/33.3   50.4±6.3/54.9   42.8±2.3/52.0   47.1±2.2/53.9   67.6±2.9/66.0               -     -0.4   +1.6  +18.4 (+16.4)
    cub     real        57.7±4.1/53.9   44.6±6.1/33.3   55.8±3.2/54.9   43.2±0.8/52.0   48.7±4.1/53.9   65.4±2.1/66.0               -     +0.4   -0.6  +15.4 (+16.4)
    sun     generated   59.4±5.2/54.5   45.0±7.6/40.3   51.4±0.4/58.1    1.4±0.0/56.5   47.2±2.2/53.7   58.2±1.3/59.4               -     -0.9   -1.2  +7.5 (+7.8)
    sun     real        53.2±0.8/54.5   47.9±1.1/40.3   56.1±1.9/58.1    1.9±0.9/56.5   47.9±1.8/53.7   58.8±1.4/59.4               -     -0.4   -0.6  +7.5 (+7.8)
    flo     generated      61.6±7.8/-      54.9±1.8/-      61.4±6.6/-      54.2±3.3/-      57.7±4.2/-      53.0±7.0/-               -        -      -  -
    flo     real           59.8±6.3/-      26.8±5.8/-      55.7±9.5/-      53.2±7.7/-      56.0±4.0/-     52.3±10.3/-               -        -      -  -
    awa2    generated   63.0±3.4/58.6  61.9±13.3/54.1   63.9±9.5/62.5   53.4±4.0/59.7   53.9±2.2/61.9   66.7±1.4/67.9               -     -0.1   -1.2  +7.5 (+8.5)
    awa2    real        77.8±0.4/58.6   59.0±1.4/54.1   62.8±0.4/62.5   46.8±4.4/59.7   64.1±3.1/61.9   67.8±8.3/67.9               -     +2.7   -0.1  +5.7 (+8.5)

    (FLO: no published target; it takes CUB's knobs. CUB and FLO with real semantics keep v3's knobs,
    so their rows repeat the "TRAINING SEEDS" ones: the same data.)

What the record says and leaves open:
- On every cell with a target the classic gap and the DAZLE gap are within 1.6 points over the
  record's seeds, except AWA2 real's classic gap, +2.7 (3.0: up to 7.2 and 8.2; the rule's tolerance
  of 1 point is on its probes, and AWA2 real ended at 1.4, see above); DAZLE's gain over the classic
  mean is within 2.9 points of the published gain (3.0: up to 10 points off, +26.4 against +16.4 on
  CUB generated). Against the probes (training seed 0) the three training seeds moved a gap by at most
  1.8 points.
- Single methods still spread about the classic mean, by what the dataset-level knobs cannot set:
  mean |ZSL gap| over ESZSL, SAE, ALE, DeViSE, SJE and DAZLE (DeViSE on SUN left out): CUB 6.8
  (generated) and 5.1 (real), SUN 4.8 and 3.5, AWA2 4.9 and 6.6 (3.0: CUB 9.7 and 5.1, SUN 5.6 and
  4.2, AWA2 5.3 and 6.5). The largest: SAE on CUB is 11-18 points above its published 33.3 (itself
  ~20 points below the other published classic baselines on CUB), ESZSL on AWA2 with real semantics
  +19.2, DeViSE 6-13 points low (its validated settings assume ResNet-101's 2048-d features) and at chance on SUN
  (feature scale, as before: left out of the rule there). On FLO (CUB's knobs, no target) DAZLE sits
  below ESZSL and ALE (53.0 against 61.6 and 61.4, generated): CUB's width is not FLO's, and there is
  no published DAZLE number on FLO to choose one.
- Nothing is at the ceiling or at chance apart from DeViSE on SUN: the highest cell mean is 77.8
  (ESZSL on AWA2, real semantics).
  The methods under study on v4 (run after the knobs were committed, informing nothing; data seed 0,
  training seed 0, generated semantics): MSDN++ ZSL CUB 70.8, SUN 56.9, FLO 57.0, AWA2 72.4
  (``zsl-bench run msdnpp --datasets all --sim --set sim.generator=4.0 --seeds 0``); MSDN 69.2 / 60.0
  / 72.0 / 69.9 (CUB / SUN / FLO / AWA2), and every other registered method but TransZero
  (``zsl-bench ablate benchmarks/main_table_cpu.yaml --sim --set sim.generator=4.0 --seeds 0``) lands
  between 45.4 and 70.4 on every dataset, DeViSE on SUN (1.4) apart: LATEM 50.6 / 48.9 / 57.8 / 59.8
  (published 49.3 / 55.3 / - / 55.8), f-CLSWGAN 48.8 / 47.8 / 57.5 / 55.9, tf-VAEGAN 60.0 / 52.5 /
  67.2 / 70.4 (rows and table: ``results/v4_check/``). TransZero was not run on v4 (a CPU unit takes
  15-40 min).

Semantic statistics (``SEMANTIC_TARGETS``, real published files, ``python
benchmarks/sim_semantic_stats.py --data-root ../shared/data/zsl``; FLO's unseen classes are unknown:
its "unseen" cosine is over all class pairs):

    dataset  nn_cos q25  median   q75  density  unseen_cos
    cub           0.876   0.913  0.951   0.282       0.598
    sun           0.928   0.948  0.964   0.256       0.496
    awa2          0.852   0.893  0.910   0.517       0.498
    flo           0.959   0.971  0.978   0.345       0.771
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from . import root as data_roots
from . import sim_v1
from .datasets import DatasetSpec, get_spec
from .loader import ATT_SPLITS, sha256_file
from .sim_common import (
    DENSITY_LEVEL,
    GROUND_TRUTH_NAME,
    META_NAME,
    PRESETS,
    TINY_SHAPE,
    ScaleParams,
    Structure,
    base_meta,
    check_non_negative,
    check_splits,
    check_unit_interval,
    chunk_starts,
    class_counts,
    class_strengths,
    generated_split,
    generated_word_vectors,
    generation_lock,
    group_weights,
    is_simulated,
    prototypes,
    real_structure,
    semantic_stats,
    sha,
    split_indices,
    store_provenance,
    unit_columns,
    write_index_files,
)
from .store import STORE_NAME, StoreWriter

log = logging.getLogger(__name__)

GENERATOR_VERSION = "zsl-bench-sim/2.0"
GENERATOR_VERSION_3 = "zsl-bench-sim/3.0"  # v2's model; AWA2's small preset larger and recalibrated
GENERATOR_VERSION_4 = "zsl-bench-sim/4.0"  # v3's model and sizes; two calibrated knobs per cell
# name -> full version string; generate(generator=<name>) (or the full string) selects one
GENERATORS: dict[str, str] = {"4.0": GENERATOR_VERSION_4, "3.0": GENERATOR_VERSION_3, "2.0": GENERATOR_VERSION,
                              "1.2": sim_v1.GENERATOR_VERSION}
# v4 is the default since results/ was regenerated under it (v3 from its own regeneration, v2 from
# its calibration record, until then); the others are asked for by name: `--set sim.generator=2.0`,
# `zsl-bench data sim --generator 1.2`, `generate(..., generator="1.2")`.
DEFAULT_GENERATOR = "4.0"
# The methods v2-v4's calibration rule reads (and nothing else): the classic baselines, whose mean is
# one target, and DAZLE, the one attention baseline (benchmarks/calibrate_sim.py applies the rule,
# benchmarks/rank_agreement.py reports the ranking over them). LATEM came after the rule was fixed.
RULE_CLASSIC = ("eszsl", "sae", "ale", "devise", "sje")
RULE_METHODS = (*RULE_CLASSIC, "dazle")
ENV_STORE_NAME = "features_env_resampled.h5"
MAX_BLOBS = 4  # clutter blobs per image at most
EMBED_NOISE = 0.2  # FLO: embedding noise relative to the latent signal's spread
__all__ = ["GENERATORS", "GENERATOR_VERSION", "GENERATOR_VERSION_3", "GENERATOR_VERSION_4", "PRESETS", "RULE_CLASSIC", "RULE_METHODS", "SEMANTIC_TARGETS", "SimParams",
           "SimParams3", "SimParams4", "cache_root", "data_identity", "data_version", "generate", "is_cached", "locate", "oracle_accuracy",
           "preset_params", "dataset_semantics", "recorded_data_version", "resolve_generator", "semantics_label"]

# Statistics of the real class semantics (command in the module docstring); generated v2 semantics
# are fitted to them. A dataset not listed here (a plug-in) gets CUB's.
SEMANTIC_TARGETS: dict[str, dict[str, float]] = {
    "cub": dict(nn_cos_q25=0.876, nn_cos_median=0.913, nn_cos_q75=0.951, density=0.282, unseen_mean_cos=0.598),
    "sun": dict(nn_cos_q25=0.928, nn_cos_median=0.948, nn_cos_q75=0.964, density=0.256, unseen_mean_cos=0.496),
    "awa2": dict(nn_cos_q25=0.852, nn_cos_median=0.893, nn_cos_q75=0.910, density=0.517, unseen_mean_cos=0.498),
    "flo": dict(nn_cos_q25=0.959, nn_cos_median=0.971, nn_cos_q75=0.978, density=0.345, unseen_mean_cos=0.771),
}


@dataclass(frozen=True)
class SimParams(ScaleParams):
    """Every parameter of one v2 generation; recorded in ``sim.json`` and the store's provenance.

    Scale fields (``ScaleParams``, plus ``unseen_images_per_class``, ``latent_parts``,
    ``latent_dim``) differ per preset and dataset. The model knobs below are the base values;
    ``CALIBRATED`` sets the calibrated ones per dataset and semantics source (module docstring;
    sizes of noise vectors are relative to a unit-norm signal at any F, appearance offsets relative
    to the typical part appearance norm).
    """

    VERSION = GENERATOR_VERSION
    unseen_images_per_class: int = 0  # > 0: images of each unseen class (generated counts)
    latent_parts: int = 0  # > 0: render visual latents in this many parts (FLO), not the attributes
    latent_dim: int = 8  # dims per latent part
    # generated semantics (fitted to SEMANTIC_TARGETS unless fit_semantics is False)
    fit_semantics: bool = True
    variants_per_group: int = 12  # part variants per attribute group
    classes_per_family: int = 4  # classes sharing a parent template
    family_mutation: float = 0.35  # probability a class re-draws a group's variant
    # appearance and instances
    w2v_share: float = 0.5
    strength_noise: float = 0.08  # per (image, attribute)
    class_gap: float = 0.12  # per (class, attribute), fixed
    part_mix: float = 0.6  # per image: parts mixed toward a similar class by U(0, part_mix) (x U(0.5, 1.5) per part)
    part_noise: float = 0.3  # per (image, part) appearance noise vector, coherent over the part
    class_look: float = 0.2  # per (class, part) fixed appearance offset
    # layout
    occlusion: float = 0.1
    jitter: float = 0.08  # per (image, part) centre jitter, std as a fraction of the side
    class_shift: float = 0.05  # per (class, part) fixed centre offset, fraction of the side
    pose_shift: float = 0.06  # per image global shift, fraction of the side
    pose_scale: float = 0.1  # per image log-scale of the layout about the grid centre
    kernel_width: float = 0.12  # fraction of the side
    kernel_jitter: float = 0.15  # per image log-std of the kernel width
    # clutter
    clutter: float = 1.0  # mean distractor blobs per image (Poisson, at most MAX_BLOBS)
    clutter_strength: float = 0.5
    # noise
    image_noise: float = 0.1
    region_noise: float = 0.25
    # confounder (an experimental axis: rho 0 in the main table)
    environments: int = 32
    env_own: float = 0.5  # share of an environment's own component (the rest: 2-4 attribute prototypes)
    rho: float = 0.0
    unseen_shift: float = 0.5
    context_strength: float = 0.0  # context-to-part energy ratio (0: the confounder is off, as in the main table)
    bleed: float = 0.2  # context weight on object cells (background: 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("latent_dim", "variants_per_group", "classes_per_family", "environments"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sim parameter '{name}' must be >= 1, got {getattr(self, name)}")
        check_non_negative(self, ("unseen_images_per_class", "latent_parts", "strength_noise", "class_gap",
                                  "part_noise", "class_look", "jitter", "class_shift", "pose_shift",
                                  "pose_scale", "kernel_jitter", "clutter", "clutter_strength",
                                  "image_noise", "region_noise", "context_strength"))
        check_unit_interval(self, ("family_mutation", "w2v_share", "part_mix", "occlusion", "env_own", "rho",
                                   "unseen_shift", "bleed"))
        if self.kernel_width <= 0:
            raise ConfigError(f"sim parameter 'kernel_width' must be > 0, got {self.kernel_width}")


DEFAULTS = SimParams()  # v2 model defaults; CALIBRATED adds the per-(dataset, source) knobs


@dataclass(frozen=True)
class SimParams3(SimParams):
    """The parameters of generator v3: v2's fields and model (``SCALE_V3`` and ``CALIBRATED_V3`` differ)."""

    VERSION = GENERATOR_VERSION_3


DEFAULTS_V3 = SimParams3()


@dataclass(frozen=True)
class SimParams4(SimParams):
    """The parameters of generator v4: v2's fields and model, v3's sizes (``CALIBRATED_V4`` differs)."""

    VERSION = GENERATOR_VERSION_4


DEFAULTS_V4 = SimParams4()

# The noise knobs that calibration moves together (one axis per dataset and semantics source):
# ``noise_level(scale)`` is each at ``scale`` x its default (``part_mix`` at most 1).
NOISE_KNOBS = ("strength_noise", "class_gap", "part_mix", "part_noise", "class_look", "image_noise",
               "region_noise")


def noise_level(scale: float) -> dict[str, float]:
    """The calibration axis: every ``NOISE_KNOBS`` field at ``scale`` x its ``DEFAULTS`` value."""
    if scale < 0:
        raise ConfigError(f"noise scale must be >= 0, got {scale}")
    out = {k: round(scale * float(getattr(DEFAULTS, k)), 4) for k in NOISE_KNOBS}
    out["part_mix"] = min(out["part_mix"], 1.0)
    return out


# Calibrated knobs per (dataset, semantics source) for the ``small`` and ``full`` presets, applied
# on top of the per-dataset scale and under explicit overrides (record in the module docstring).
# The source is "real" when the generator reads ``att_splits.mat`` from the data root, else
# "generated". Chosen by the rule in the calibration record (module docstring): no background
# clutter, no context (the confounder is an experimental axis), and one noise scale per cell. FLO has no
# published number of a calibration method: it takes CUB's scales (the other fine-grained dataset).
_CALIBRATED_SCALE = {("cub", "generated"): 0.99, ("cub", "real"): 0.78, ("sun", "generated"): 1.22,
                     ("sun", "real"): 1.14, ("awa2", "generated"): 0.62, ("awa2", "real"): 0.55,
                     ("flo", "generated"): 0.99, ("flo", "real"): 0.78}


def _calibrated(scales: dict[tuple[str, str], float]) -> dict[tuple[str, str], dict[str, Any]]:
    """The calibrated knobs of each (dataset, source) cell: no background clutter, one noise scale."""
    return {cell: {**noise_level(scale), "clutter": 0.0} for cell, scale in scales.items()}


CALIBRATED = _calibrated(_CALIBRATED_SCALE)

# Generator v3 = v2 with AWA2's small preset at 100 images per class (v2: 24, so 19 training images
# per seen class, and DAZLE's official 20 epochs were ~300 optimiser steps against ~9,400 on the
# real AWA2; module docstring, "GENERATOR V3") and AWA2's noise scales chosen again by v2's rule.
# AWA2's full preset takes the new scales too (as in v2, calibrated knobs apply to small and full);
# every other dataset has v2's parameters, so v3 writes v2's data there bit for bit.
SCALE_V3: dict[tuple[str, str], dict[str, Any]] = {
    ("awa2", "small"): dict(images_per_class=100, max_images=5000)}
CALIBRATED_V3 = _calibrated({**_CALIBRATED_SCALE, ("awa2", "generated"): 0.84, ("awa2", "real"): 0.86})


# Generator v4 = v3 (model and sizes) with two calibrated knobs per (dataset, source) cell: the noise
# scale (``noise_level``), which sets how hard every method finds the data, and the part kernel width
# (``kernel_width``, v2/v3: 0.12 everywhere), which sets how much region attention gains over pooled
# features (wider parts help pooled features and blur what attention localises). Chosen by the rule in
# "GENERATOR V4" (module docstring) from the classic baselines and DAZLE only. FLO has no published
# number of a calibration method: it takes CUB's knobs, as in v2.
_CALIBRATED_V4: dict[tuple[str, str], tuple[float, float]] = {  # (noise scale, kernel width)
    ("cub", "generated"): (0.98, 0.15), ("cub", "real"): (0.78, 0.12),
    ("sun", "generated"): (1.32, 0.19), ("sun", "real"): (1.30, 0.20),
    ("awa2", "generated"): (0.87, 0.35), ("awa2", "real"): (0.52, 0.06)}
_CALIBRATED_V4.update({("flo", s): _CALIBRATED_V4[("cub", s)] for s in ("generated", "real")})
CALIBRATED_V4 = {cell: {**noise_level(s), "clutter": 0.0, "kernel_width": w}
                 for cell, (s, w) in _CALIBRATED_V4.items()}


def _v2_model(version: str) -> tuple[SimParams, dict[tuple[str, str], dict[str, Any]],
                                     dict[tuple[str, str], dict[str, Any]]]:
    """A version with v2's model: its parameter defaults, its per-(dataset, preset) scale on top of
    the dataset's ``sim_scale``/``sim_scale_v2``, and its calibrated knobs per (dataset, source)."""
    return {"3.0": (DEFAULTS_V3, SCALE_V3, CALIBRATED_V3),
            "4.0": (DEFAULTS_V4, SCALE_V3, CALIBRATED_V4)}.get(version, (DEFAULTS, {}, CALIBRATED))

PRESET_SCALE: dict[str, dict[str, Any]] = {
    # tiny is for unit tests that check a method learns at all: little noise, unfitted semantics.
    "tiny": dict(feature_dim=32, grid_side=4, images_per_class=20, max_images=160,
                 min_images_per_class=20, real_semantics=False, chunk_size=64, fit_semantics=False,
                 classes_per_family=1, strength_noise=0.02, class_gap=0.05, part_mix=0.0, part_noise=0.05,
                 class_look=0.05, image_noise=0.02, region_noise=0.1, occlusion=0.05, jitter=0.08,
                 class_shift=0.0, pose_shift=0.02, pose_scale=0.02, kernel_jitter=0.02, clutter=0.2,
                 clutter_strength=0.2, environments=6, context_strength=0.02),
    "small": dict(feature_dim=256, grid_side=7, images_per_class=40, max_images=4000,
                  min_images_per_class=5, chunk_size=256),
    "full": dict(feature_dim=2048, grid_side=14, real_image_counts=True, chunk_size=32),
}
# Per dataset: ``DatasetSpec.sim_scale`` (v1's budget, see sim_v1), then ``sim_scale_v2`` on top.
# The main command's budget (sim_v1's comment: MSDN++ ~0.35 ms per image per epoch at A=312,
# proportional to A) grows with v2 on FLO (102 x 20 images at A=1024, ~2.5x v1's FLO cost) and
# AWA2 (800 unseen test images instead of 240; test images are scored, not trained on).


# --------------------------------------------------------------------------- versions and caches
def resolve_generator(generator: str | None) -> str:
    """A generator name (``"2.0"``, ``"1.2"``, a full ``zsl-bench-sim/x`` string or None) -> its name."""
    if generator is None:
        return DEFAULT_GENERATOR
    g = str(generator).strip()
    for name, full in GENERATORS.items():
        if g in (name, full):
            return name
    raise ConfigError(f"unknown sim generator '{generator}'; valid: {', '.join(GENERATORS)}")


# Where v3's data differ from v2's: (dataset, preset). Everywhere else v3 writes v2's data bit for bit
# (tests/test_sim_versions.py), so a result of either stands for both (``data_version``).
V3_CHANGED: frozenset[tuple[str, str]] = frozenset({("awa2", "small"), ("awa2", "full")})
# v4 changes the calibrated knobs of every dataset, which apply to the small and full presets only: on
# the tiny preset v4 writes v2's data bit for bit.
V4_CHANGED: frozenset[str] = frozenset({"small", "full"})


def data_version(generator: str | None, dataset: str, preset: str) -> str:
    """The oldest generator version (a name) that writes the same data as ``generator`` for
    ``dataset`` at ``preset``: v3 off AWA2's small and full presets is v2 (``V3_CHANGED``), v4 on the
    tiny preset is v2 (``V4_CHANGED``; v4 keeps v3's knobs on CUB and FLO with real semantics, but the
    version is per dataset and preset, so those units count as changed too).

    Studies compare this, not the version name, to tell whether finished units still stand for the
    data the code now generates (a changed default generator reruns only where the data changed).
    """
    name = resolve_generator(generator)
    if name == "3.0" and (str(dataset).lower(), str(preset)) not in V3_CHANGED:
        return "2.0"
    if name == "4.0" and str(preset) not in V4_CHANGED:
        return "2.0"
    return name


def recorded_data_version(version: str, dataset: str, preset: str) -> str:
    """``data_version`` of a version as recorded (a row's ``generator_version``, ``sim.json``); one
    this code does not know stays as written, so it matches nothing but itself."""
    try:
        return data_version(version, dataset, preset)
    except ConfigError:
        return str(version)


def data_identity(meta: dict[str, Any], dataset: str) -> str:
    """Simulated data as a string (checkpoint fingerprints): the generator whose data they are
    (``recorded_data_version``: v3 off AWA2 is v2), the preset, the seed and the hash of the
    generator's parameters, from the dataset's ``sim.json`` (``meta``)."""
    gen = str(meta.get("generator") or meta.get("generator_version") or "")
    preset = str(meta.get("preset", ""))
    real = "/real-semantics" if meta.get("real_semantics") else ""  # v1's parameters do not say
    return (f"{recorded_data_version(gen, dataset, preset)}/{preset}/seed{meta.get('seed', '')}/"
            f"{meta.get('params_hash', '')}{real}")


def _params_class(name: str) -> type[ScaleParams]:
    return {"1.2": sim_v1.SimParams, "3.0": SimParams3, "4.0": SimParams4}.get(name, SimParams)


def preset_params(preset: str, name: str | None = None, generator: str | None = None,
                  source: str | None = None, **overrides: Any) -> ScaleParams:
    """The parameters of a preset (for dataset ``name`` when given) of a generator, with overrides.

    ``source`` ("generated" or "real", v2 only) adds the calibrated knobs of (``name``, source)
    (``CALIBRATED``) for the ``small`` and ``full`` presets; ``generate`` passes the source it uses.

    Raises:
        ConfigError: unknown preset, generator or parameter (naming the valid ones), bad value.
    """
    version = resolve_generator(generator)
    if preset not in PRESETS:
        raise ConfigError(f"unknown sim preset '{preset}'; valid: {', '.join(PRESETS)}")
    known = {f.name for f in fields(_params_class(version))}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"unknown sim parameter(s) {bad} for generator {version}; valid: {sorted(known)}")
    if version == "1.2":
        return sim_v1.preset_params(preset, name, **overrides)
    spec = get_spec(name) if name else None
    base, scale, table = _v2_model(version)
    per_dataset = {**spec.sim_scale.get(preset, {}), **spec.sim_scale_v2.get(preset, {}),
                   **scale.get((spec.name, preset), {})} if spec else {}
    per_dataset = {k: v for k, v in per_dataset.items() if k in known}
    if source not in (None, "generated", "real"):
        raise ConfigError(f"unknown semantics source '{source}'; valid: generated, real")
    calibrated = table.get((spec.name, source), {}) if spec and source and preset != "tiny" else {}
    return replace(base, **{**PRESET_SCALE[preset], **per_dataset, **calibrated, **overrides})


def semantics_source(spec: DatasetSpec, real_semantics: bool,
                     data_root: str | os.PathLike[str] | None = None) -> str:
    """"real" when the generator reads ``<data_root>/<DIR>/att_splits.mat`` (``real_semantics`` and
    the file exists), else "generated"."""
    real = real_semantics and (data_roots.data_root(data_root) / spec.dirname / ATT_SPLITS).is_file()
    return "real" if real else "generated"


def _canonical_overrides(version: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides with values in their field's type (``rho=1`` and ``rho=1.0`` are one setting)."""
    types = {f.name: f.type for f in fields(_params_class(version))}
    out: dict[str, Any] = {}
    for k in sorted(overrides):
        v = overrides[k]
        t = str(types.get(k, ""))
        if t == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
        elif t == "int" and isinstance(v, float) and v.is_integer():
            v = int(v)
        out[k] = v
    return out


REAL_FILES_NAME = "real_files.json"
"""Beside ``sim.json`` when the generator read real semantics: the sha256 of each real file it read
(kept out of ``sim.json``, which v1 writes bit for bit as its release did)."""


def real_files(spec: DatasetSpec, data_root: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """{file name: sha256} of the real metadata the generator reads for ``spec`` under the data root
    (``att_splits.mat`` and, when present, the attribute word vectors)."""
    ddir = data_roots.data_root(data_root) / spec.dirname
    return {rel: sha256_file(ddir / rel) for rel in (ATT_SPLITS, f"w2v/{spec.dirname}_attribute.npy")
            if (ddir / rel).is_file()}


def semantics_key(real: dict[str, str] | None) -> str:
    """The cache key of a dataset's semantics: "" for generated ones, ``real-<digest>`` for real files."""
    if not real:
        return ""
    return "real-" + hashlib.sha256(json.dumps(real, sort_keys=True).encode()).hexdigest()[:10]


def semantics_label(real: dict[str, str] | None) -> str:
    """What a result row's ``sim_semantics`` column records for data whose semantics came from
    ``real`` ({real file: sha256}, empty for generated ones): ``generated`` or :func:`semantics_key`."""
    return semantics_key(real) or "generated"


def dataset_semantics(ddir: Path, meta: dict[str, Any]) -> str:
    """:func:`semantics_label` of a generated dataset directory, from its ``sim.json`` (``meta``) and
    ``real_files.json``; ``real`` when real semantics were used but their files were not recorded (v1)."""
    if not meta.get("real_semantics"):
        return "generated"
    try:
        real = json.loads((Path(ddir) / REAL_FILES_NAME).read_text())
    except (OSError, ValueError):
        return "real"
    return semantics_label(real) if isinstance(real, dict) and real else "real"


def cache_root(preset: str, seed: int, generator: str | None = None, *, semantics: str = "",
               **overrides: Any) -> Path:
    """The default parent directory of a simulated dataset: keyed by generator version, semantics
    source and overrides.

    The default version with generated semantics and no overrides: ``sim_root(preset, seed)``
    (``<cache>/sim/small-seed0``); else a sibling ``<preset>-seed<seed>[-sim<version>][-<semantics>]
    [-<hash of the overrides>]``, ``semantics`` being :func:`semantics_key` of the real files read
    (generated and real semantics, or two different real files, never share a directory).
    """
    version = resolve_generator(generator)
    preset_params(preset, None, version, **overrides)  # validates names and values
    base = data_roots.sim_root(preset, seed)
    tags = [] if version == DEFAULT_GENERATOR and not overrides else [f"sim{version}"]
    if semantics:
        tags.append(semantics)
    if overrides:
        canon = json.dumps(_canonical_overrides(version, overrides), sort_keys=True, default=str)
        tags.append(hashlib.sha256(canon.encode()).hexdigest()[:10])
    return base.with_name("-".join([base.name, *tags])) if tags else base


def is_cached(ddir: Path, preset: str, seed: int, params: ScaleParams,
              real: dict[str, str] | None = None) -> bool:
    """True when ``ddir`` holds a complete dataset made by ``params``' generator with these parameters
    and these semantics: generated ones (``real`` empty) or real ones read from files with exactly
    these digests (``real_files``)."""
    meta_file = ddir / META_NAME
    if not (meta_file.is_file() and (ddir / STORE_NAME).is_file()):
        return False
    try:
        meta = json.loads(meta_file.read_text())
        recorded = json.loads((ddir / REAL_FILES_NAME).read_text()) if meta.get("real_semantics") else {}
    except (OSError, json.JSONDecodeError):
        return False
    if isinstance(params, SimParams) and not (ddir / ENV_STORE_NAME).is_file():
        return False
    return (meta.get("generator") == type(params).VERSION and meta.get("preset") == preset
            and meta.get("seed") == seed and meta.get("params_hash") == sha(asdict(params))
            and recorded == (real or {}))


def locate(name: str, preset: str, seed: int = 0, data_root: str | os.PathLike[str] | None = None,
           out_root: str | os.PathLike[str] | None = None, generator: str | None = None,
           **overrides: Any) -> tuple[Path, ScaleParams, dict[str, str]]:
    """Where :func:`generate` puts a dataset, with the parameters and the real files it would use:
    (dataset directory, parameters, {real file: sha256}, empty for generated semantics)."""
    spec = get_spec(name)
    version = resolve_generator(generator)
    params = preset_params(preset, spec.name, version, **overrides)
    source = semantics_source(spec, params.real_semantics, data_root)
    if isinstance(params, SimParams):  # v2: the calibrated knobs of the semantics source it will use
        params = preset_params(preset, spec.name, version, source, **overrides)
    real = real_files(spec, data_root) if source == "real" else {}
    out = (Path(out_root).expanduser() if out_root is not None
           else cache_root(preset, seed, version, semantics=semantics_key(real), **overrides))
    return out / spec.dirname, params, real


def generate(name: str, preset: str, seed: int = 0, data_root: str | os.PathLike[str] | None = None,
             out_root: str | os.PathLike[str] | None = None, *, force: bool = False,
             progress: bool = False, generator: str | None = None, **overrides: Any) -> Path:
    """Write one simulated dataset and return its directory (``<out_root>/<DIR>``).

    Args:
        name: a registered dataset (cub, sun, awa2, flo).
        preset: tiny, small or full.
        seed: the generator's seed; output is a pure function of (generator, name, preset, seed,
            parameters, real files used).
        data_root: where real semantics are looked up (``small``/``full``); default as
            ``zsl_bench.data.root.data_root``.
        out_root: parent of the dataset directory; default ``cache_root(preset, seed, generator,
            **overrides)``.
        force: regenerate even when a matching dataset exists.
        progress: show a tqdm bar over feature chunks.
        generator: ``GENERATORS`` name (default: ``DEFAULT_GENERATOR``); ``"1.2"`` reproduces v1
            bit for bit.
        **overrides: ``SimParams`` fields of that version (tests, calibration, sweeps); recorded in
            ``sim.json``.

    Raises:
        ConfigError: unknown dataset, preset, generator or parameter.
        DataError: unreadable real files; a dataset with other parameters already at the target.
    """
    spec = get_spec(name)
    if seed < 0:
        raise ConfigError(f"sim seed must be >= 0, got {seed}")
    ddir, params, real = locate(name, preset, seed, data_root, out_root, generator, **overrides)
    out = ddir.parent
    out.mkdir(parents=True, exist_ok=True)
    # Check-and-generate under an exclusive lock beside the dataset directory: a second process
    # (two `zsl-bench run`, `ablate --workers 2`) waits, then finds the finished copy cached
    # instead of generating it again and replacing the directory under the first one's reader.
    with generation_lock(out / f".{spec.dirname}.lock"):
        if not force and is_cached(ddir, preset, seed, params, real):
            log.info("%s: cached simulated dataset (%s, seed %d)", ddir, preset, seed)
            return ddir
        if ddir.exists() and not force and not is_simulated(ddir):
            raise DataError(f"{ddir} exists but is not a simulated dataset (no {META_NAME} saying "
                            f"'simulated'); pass --force (force=True) to replace it")
        if ddir.exists() and not force:
            # A cache written by another generator version or parameters: it is a pure function
            # of its inputs, so it is replaced rather than reused.
            log.warning("%s: simulated dataset from another generator version or parameters (or "
                        "incomplete); regenerating it", ddir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.dirname}.", suffix=".tmp", dir=out))
        try:
            if isinstance(params, SimParams):
                meta = write_dataset(tmp, spec, preset, seed, params, data_root, progress)
            else:
                assert isinstance(params, sim_v1.SimParams)
                meta = sim_v1.write_dataset(tmp, spec, preset, seed, params, data_root, progress)
            if meta.get("real_semantics"):  # which real files: the cache is reused only for the same ones
                (tmp / REAL_FILES_NAME).write_text(json.dumps(real, indent=2, sort_keys=True))
            if ddir.exists():
                trash = ddir.with_name(f".{ddir.name}.old-{os.getpid()}")
                os.replace(ddir, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, ddir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("%s: wrote simulated %s (%s, %d images, %d classes, F=%d, R=%d)", ddir, preset,
             meta["generator"], meta["images"], meta["classes"], params.feature_dim, params.grid_side ** 2)
    return ddir


# --------------------------------------------------------------------------- semantics
@dataclass
class Look:
    """What the images render: class strengths over render dims (attributes, or FLO's latents)."""

    strengths: np.ndarray  # [K, L] float32 in [0, 1]
    group: np.ndarray  # [L] int64, render dim -> part
    group_names: list[str]
    latent_w2v: np.ndarray  # [L, 300] vectors the prototypes are drawn from


@dataclass
class _SemanticDraws:
    """Fixed random draws of generated semantics; ``compose`` is a deterministic function of the knobs.

    Knobs: ``spread`` in [0, 2] sets the density (0-1: the base rates go from concentrated on a few
    attributes, μ^e⁴, to flat, μ^e⁻²; 1-2: variants gain active attributes, 0 -> 60 %), ``base`` the
    weight of the shared base rates (similarity of all classes), ``mutation`` the probability that a
    class departs from its family's variant in a group (similarity to the nearest class).
    """

    group: np.ndarray  # [L]
    on_u: np.ndarray  # [V, L] uniform: a variant's attribute is active when below the active fraction
    on_value: np.ndarray  # [V, L] U(0.5, 1)
    faint: np.ndarray  # [V, L] U(0, 0.1)
    forced: np.ndarray  # [V, L] bool: one attribute per (variant, group) always active
    template: np.ndarray  # [K, G] the family's variant per class and group
    mutate_u: np.ndarray  # [K, G] uniform: the class re-draws the group's variant when below mutation
    mutant: np.ndarray  # [K, G] the re-drawn variant
    base: np.ndarray  # [L] U(0, 1) base rates
    eps: np.ndarray  # [K, L] N(0, 1)

    def compose(self, spread: float, base: float, mutation: float, noise: float = 0.03) -> np.ndarray:
        """[K, L] non-negative class patterns."""
        active = 0.6 * min(max(spread - 1.0, 0.0), 1.0)
        power = float(np.exp(4.0 - 6.0 * min(max(spread, 0.0), 1.0)))
        variants = np.where((self.on_u < active) | self.forced, self.on_value, self.faint)  # [V, L]
        choice = np.where(self.mutate_u < mutation, self.mutant, self.template)  # [K, G]
        parts = np.take_along_axis(variants, choice[:, self.group], axis=0)  # [K, L]
        return np.maximum(parts + base * self.base[None] ** power + noise * self.eps, 0.0)


def _draw_semantics(rng: np.random.Generator, k: int, group: np.ndarray, params: SimParams) -> _SemanticDraws:
    v, g, n = params.variants_per_group, int(group.max()) + 1, len(group)
    forced = np.zeros((v, n), dtype=bool)
    for gi in range(g):
        idx = np.flatnonzero(group == gi)
        forced[np.arange(v), idx[rng.integers(len(idx), size=v)]] = True
    on_u, on_value, faint = rng.random((v, n)), rng.uniform(0.5, 1.0, (v, n)), rng.uniform(0.0, 0.1, (v, n))
    families = max(1, -(-k // params.classes_per_family))
    template = rng.integers(v, size=(families, g))[rng.integers(families, size=k)]
    mutate_u, mutant = rng.random((k, g)), rng.integers(v, size=(k, g))
    return _SemanticDraws(group, forced=forced, on_u=on_u, on_value=on_value, faint=faint, template=template,
                          mutate_u=mutate_u, mutant=mutant, base=rng.random(n), eps=rng.standard_normal((k, n)))


def _fit_stat(sem: np.ndarray, unseen: np.ndarray, stat: str) -> float:
    """One statistic of ``semantic_stats`` ([A, K] semantics), computed only as far as it needs."""
    if stat == "density":
        flat = np.clip(sem, 0.0, None).ravel() if (sem >= 0).all() else sem.ravel()
        return float(np.mean(flat > DENSITY_LEVEL * np.quantile(flat, 0.99)))
    u = (sem / np.maximum(np.linalg.norm(sem, axis=0, keepdims=True), 1e-12)).astype(np.float32)
    if stat == "unseen_mean_cos":
        cu = u[:, unseen].T @ u[:, unseen]
        return float(cu[np.triu_indices(len(unseen), 1)].mean())
    cos = u.T @ u
    np.fill_diagonal(cos, -np.inf)
    return float(np.median(cos.max(axis=1)))


def _bisect(f: Any, lo: float, hi: float, increasing: bool, steps: int = 10) -> float:
    """The knob in [lo, hi] where f crosses 0 (f monotone in the stated direction)."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if (f(mid) < 0) == increasing:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _fit(sem_of: Any, unseen: np.ndarray, target: dict[str, float], knobs: dict[str, float],
         plan: list[tuple[str, str, float, float, bool]], rounds: int = 4) -> dict[str, float]:
    """Coordinate bisection: each knob in turn hits its statistic, the others fixed; a few rounds.

    ``plan``: (knob, statistic, low, high, statistic increasing in the knob).
    """
    knobs = dict(knobs)
    for _ in range(rounds):
        for knob, stat, lo, hi, increasing in plan:
            knobs[knob] = _bisect(
                lambda x, knob=knob, stat=stat: _fit_stat(sem_of({**knobs, knob: x}), unseen, stat) - target[stat],
                lo, hi, increasing)
        if all(abs(_fit_stat(sem_of(knobs), unseen, stat) - target[stat]) < 0.003 for _, stat, *_ in plan):
            break
    return knobs


def _targets(name: str) -> dict[str, float]:
    return SEMANTIC_TARGETS.get(name, SEMANTIC_TARGETS["cub"])


def _generated_attributes(spec: DatasetSpec, rng: np.random.Generator, params: SimParams, tiny: bool,
                          split: tuple[np.ndarray, ...]) -> tuple[Structure, Look, dict[str, float]]:
    if tiny:
        k, a, g = TINY_SHAPE["classes"], TINY_SHAPE["attributes"], TINY_SHAPE["groups"]
    else:
        k, a, g = spec.classes, spec.semantic_dim, spec.sim_groups
    att_group = np.concatenate([np.full(len(b), i) for i, b in enumerate(np.array_split(np.arange(a), g))])
    draws = _draw_semantics(rng, k, att_group, params)
    seen_c, unseen_c, train_c, val_c = split
    # Unfitted (tiny): v1-like independent sparse variants, no shared base rates.
    knobs = {"spread": 1.5, "base": 0.0, "mutation": params.family_mutation}
    if params.fit_semantics:
        knobs = _fit(lambda kn: draws.compose(**kn).T, unseen_c, _targets(spec.name),
                     {"spread": 0.5, "base": 0.3, "mutation": params.family_mutation},
                     [("base", "unseen_mean_cos", 0.0, 4.0, True), ("mutation", "nn_cos_median", 0.0, 1.0, False),
                      ("spread", "density", 0.0, 2.0, True)])
    original = 100.0 * draws.compose(**knobs).T  # [A, K]
    latent = generated_word_vectors(rng, att_group)
    names = [f"group_{i}" for i in range(g)]
    st = Structure(
        att=unit_columns(original), original_att=original if spec.has_original_att else None,
        strengths=class_strengths(original), att_group=att_group.astype(np.int64), group_names=names,
        latent_w2v=latent, w2v=latent if spec.has_word_vectors else None,
        class_names=[f"sim_class_{i:03d}" for i in range(k)] if spec.has_class_names else None,
        seen=seen_c, unseen=unseen_c, train_classes=train_c, val_classes=val_c,
        real_semantics=False, real_word_vectors=False, real_split=False)
    return st, Look(st.strengths, st.att_group, names, latent), knobs


def _latent_groups(params: SimParams) -> np.ndarray:
    return np.repeat(np.arange(params.latent_parts), params.latent_dim).astype(np.int64)


def _attribute_parts(sem: np.ndarray, latents: np.ndarray, group: np.ndarray) -> np.ndarray:
    """[A] each semantic dim's part: the one whose latents explain most of it over classes."""
    s = sem - sem.mean(axis=1, keepdims=True)  # [A, K]
    z = latents - latents.mean(axis=0, keepdims=True)  # [K, L]
    s = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    z = z / np.maximum(np.linalg.norm(z, axis=0, keepdims=True), 1e-12)
    r2 = (s @ z) ** 2  # [A, L]
    per_part = np.stack([r2[:, group == gi].sum(axis=1) for gi in range(int(group.max()) + 1)], axis=1)
    return per_part.argmax(axis=1).astype(np.int64)


def _generated_embedding(spec: DatasetSpec, rng: np.random.Generator, params: SimParams,
                         split: tuple[np.ndarray, ...]) -> tuple[Structure, Look, dict[str, float]]:
    """FLO: visual latents in parts; semantics = a fixed random 1,024-d embedding of them + noise."""
    k, a = spec.classes, spec.semantic_dim
    group = _latent_groups(params)
    draws = _draw_semantics(rng, k, group, params)
    proj = rng.standard_normal((a, len(group))) / np.sqrt(len(group))
    common = rng.standard_normal(a)
    xi = rng.standard_normal((a, k))
    seen_c, unseen_c, train_c, val_c = split

    def latents_of(mutation: float) -> np.ndarray:  # [K, L]
        return draws.compose(1.5, 0.0, mutation)

    def embed(kn: dict[str, float]) -> np.ndarray:  # [A, K]
        z = latents_of(kn["mutation"])
        signal = proj @ (z - z.mean(axis=0, keepdims=True)).T
        return (kn["common"] * float(signal.std()) * (common + kn["offset"])[:, None] + signal
                + EMBED_NOISE * float(signal.std()) * xi)

    knobs = {"common": 1.0, "mutation": params.family_mutation, "offset": 0.0}
    if params.fit_semantics:
        knobs = _fit(embed, unseen_c, _targets(spec.name), knobs,
                     [("common", "unseen_mean_cos", 0.0, 10.0, True),
                      ("mutation", "nn_cos_median", 0.0, 1.0, False), ("offset", "density", -2.0, 2.0, True)])
    latents = latents_of(knobs["mutation"])
    att = unit_columns(embed(knobs))
    latent_w2v = generated_word_vectors(rng, group)
    parts = [f"part_{i}" for i in range(params.latent_parts)]
    st = Structure(
        att=att, original_att=None, strengths=class_strengths(att),
        att_group=_attribute_parts(att, latents, group), group_names=parts, latent_w2v=latent_w2v, w2v=None,
        class_names=None, seen=seen_c, unseen=unseen_c, train_classes=train_c, val_classes=val_c,
        real_semantics=False, real_word_vectors=False, real_split=False)
    return st, Look(class_strengths(latents.T), group, parts, latent_w2v), knobs


def _real_latents(st: Structure, rng: np.random.Generator, params: SimParams) -> tuple[Structure, Look]:
    """Real FLO semantics: render their top principal components (both signs) as visual latents."""
    group = _latent_groups(params)
    att = np.asarray(st.att, dtype=np.float64)
    centred = att - att.mean(axis=1, keepdims=True)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    half = (len(group) + 1) // 2
    scores = (vt[:half].T * sv[:half])  # [K, half]
    latents = np.concatenate([scores, -scores], axis=1)[:, :len(group)]
    latent_w2v = generated_word_vectors(rng, group)
    parts = [f"part_{i}" for i in range(params.latent_parts)]
    st = replace(st, att_group=_attribute_parts(att, latents, group), group_names=parts)
    return st, Look(class_strengths(latents.T), group, parts, latent_w2v)


def _structure(spec: DatasetSpec, rng: np.random.Generator, params: SimParams,
               data_root: str | os.PathLike[str] | None) -> tuple[Structure, Look, dict[str, float] | None]:
    real_dir = data_roots.data_root(data_root) / spec.dirname
    if semantics_source(spec, params.real_semantics, data_root) == "real":
        st = real_structure(spec, real_dir, rng)
        log.info("%s: real semantics from %s", spec.name, real_dir)
        if params.latent_parts:
            st, look = _real_latents(st, rng, params)
        else:
            look = Look(st.strengths, st.att_group, st.group_names, st.latent_w2v)
        return st, look, None
    tiny = not params.real_semantics
    if tiny:
        k, s, v = TINY_SHAPE["classes"], TINY_SHAPE["seen"], TINY_SHAPE["val"]
    else:
        k, s, v = spec.classes, spec.seen, min(spec.unseen, spec.seen // 3)
    split = generated_split(rng, k, s, v)
    if params.latent_parts and not tiny:
        return _generated_embedding(spec, rng, params, split)
    return _generated_attributes(spec, rng, params, tiny, split)


# --------------------------------------------------------------------------- images
@dataclass
class Scene:
    """Every per-image latent and the fixed appearance model; ``render`` turns rows into features."""

    labels: np.ndarray  # [N] int64, grouped by class
    split: np.ndarray  # [N] int8: 0 trainval, 1 test_seen, 2 test_unseen
    strengths: np.ndarray  # [N, L] float32
    centres: np.ndarray  # [N, G, 2] float32, (row, col) in grid cells
    visible: np.ndarray  # [N, G] bool
    width: np.ndarray  # [N] float32 kernel width in cells
    blob_dim: np.ndarray  # [N, MAX_BLOBS] int64 render dim a clutter blob looks like
    blob_pos: np.ndarray  # [N, MAX_BLOBS, 2] float32
    blob_on: np.ndarray  # [N, MAX_BLOBS] bool
    environment: np.ndarray  # [N] int64
    environment_resampled: np.ndarray  # [N] int64
    # model
    group: np.ndarray  # [L]
    scaled: np.ndarray  # [L, F] prototypes / nn
    protos: np.ndarray  # [L, F] unit prototypes
    class_look: np.ndarray  # [K, G, F]
    part_norm: float  # typical group appearance norm
    env_vectors: np.ndarray  # [E, F] unit
    side: int  # grid side
    context_amplitude: float = 0.0

    def parts(self, rows: Any, part_noise: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Part term [B, F, R] (with ``part_noise`` [B, G, F] when given) and object weight [B, R]."""
        s = self.strengths[rows]  # [B, L]
        b, g, f = s.shape[0], self.class_look.shape[1], self.scaled.shape[1]
        gvec = np.empty((b, g, f), dtype=np.float32)  # [B, G, F]
        for gi in range(g):
            idx = self.group == gi
            gvec[:, gi] = s[:, idx] @ self.scaled[idx]
        gvec += self.class_look[self.labels[rows]]
        if part_noise is not None:
            gvec += part_noise
        kern = self._kernel(self.centres[rows], self.width[rows]) * self.visible[rows][:, :, None]  # [B, G, R]
        return np.matmul(gvec.transpose(0, 2, 1), kern), kern.max(axis=1)

    def _kernel(self, centres: np.ndarray, width: np.ndarray) -> np.ndarray:
        """[B, M, R] Gaussian bumps around ``centres`` [B, M, 2] of per-image ``width`` [B]."""
        side = self.side
        yy, xx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        grid = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float32)  # [R, 2]
        d2 = ((centres[:, :, None, :] - grid[None, None]) ** 2).sum(-1)  # [B, M, R]
        w = width[:, None, None]
        return np.exp(-d2 / (2 * w * w)).astype(np.float32)

    def render(self, rows: slice, params: SimParams, rng: np.random.Generator,
               environments: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        """Features of ``rows`` under each environment assignment -> ([B, F, R] each, mask [B, R]).

        The noise is drawn once, so the renders differ only in their context term.
        """
        f, r = self.scaled.shape[1], self.side ** 2
        b = len(self.labels[rows])
        g = self.class_look.shape[1]
        scale = np.float32(1.0 / np.sqrt(f))
        part_noise = (params.part_noise * self.part_norm * scale
                      * rng.standard_normal((b, g, f), dtype=np.float32))
        feats, obj = self.parts(rows, part_noise)
        # Clutter: distractor blobs that look like random attribute prototypes.
        kb = self._kernel(self.blob_pos[rows], self.width[rows]) * self.blob_on[rows][:, :, None]  # [B, M, R]
        amp = np.float32(params.clutter_strength * self.part_norm)
        feats += np.matmul((amp * self.protos[self.blob_dim[rows]]).transpose(0, 2, 1), kb)
        feats += params.image_noise * scale * rng.standard_normal((b, f, 1), dtype=np.float32)
        buf = rng.standard_normal((b, f, r), dtype=np.float32)
        buf *= np.float32(params.region_noise * scale)
        feats += buf
        mask = ((1.0 - obj) + params.bleed * obj).astype(np.float32)  # [B, R]
        outs = []
        for i, env in enumerate(environments):
            out = feats if i == len(environments) - 1 else feats.copy()
            if self.context_amplitude > 0:
                ctx = np.float32(self.context_amplitude) * self.env_vectors[env[rows]]  # [B, F]
                out += np.multiply(ctx[:, :, None], mask[:, None, :], out=buf)
            outs.append(np.maximum(out, 0.0, out=out))
        return outs, mask


def _counts(spec: DatasetSpec, st: Structure, params: SimParams) -> dict[str, np.ndarray]:
    counts = class_counts(spec, st, params)
    if params.unseen_images_per_class and not (params.real_image_counts and st.real_counts is not None):
        counts = dict(counts)
        tu = counts["test_unseen"].copy()
        tu[st.unseen] = params.unseen_images_per_class
        counts["test_unseen"] = tu
    return counts


def _draw_scene(st: Structure, look: Look, counts: dict[str, np.ndarray], params: SimParams,
                rng: np.random.Generator, env_rng: np.random.Generator) -> Scene:
    """Per-image latents (drawn once, in row order), the appearance model and the environments."""
    k = st.att.shape[1]
    labels_l, split_l = [], []
    for c in range(k):
        tags = np.repeat(np.array([0, 1, 2], dtype=np.int8),
                         [counts["trainval"][c], counts["test_seen"][c], counts["test_unseen"][c]])
        labels_l.append(np.full(len(tags), c, dtype=np.int64))
        split_l.append(rng.permutation(tags))  # which of a class's rows are test is random
    labels, split = np.concatenate(labels_l), np.concatenate(split_l)
    n, g, side = len(labels), len(look.group_names), params.grid_side
    # Layout: fixed part centres, a fixed per-(class, part) shift, then per-image pose and jitter.
    base = rng.uniform(0.15, 0.85, size=(g, 2)) * (side - 1)
    class_shift = rng.normal(0.0, params.class_shift * side, size=(k, g, 2))
    shift = rng.normal(0.0, params.pose_shift * side, size=(n, 1, 2))
    scale = np.exp(rng.normal(0.0, params.pose_scale, size=(n, 1, 1)))
    jitter = rng.normal(0.0, params.jitter * side, size=(n, g, 2))
    mid = (side - 1) / 2.0
    centres = mid + scale * (base[None] + class_shift[labels] - mid) + shift + jitter
    centres = np.clip(centres, 0, side - 1).astype(np.float32)
    width = (params.kernel_width * side * scale.ravel()
             * np.exp(rng.normal(0.0, params.kernel_jitter, size=n))).astype(np.float32)
    visible = rng.random((n, g)) >= params.occlusion
    # Instances: class look (class strengths + a fixed gap), each part mixed toward the same part of
    # a random other class of its side, then per-image noise.
    gap = rng.normal(0.0, params.class_gap, size=look.strengths.shape).astype(np.float32)
    looks = look.strengths + gap  # [K, L]
    strengths = looks[labels]
    confused = looks[_confusers(look.strengths, st, labels, rng)]  # [N, L]
    lam = (rng.uniform(0.0, params.part_mix, size=(n, 1)) * rng.uniform(0.5, 1.5, size=(n, g)))
    lam = np.clip(lam, 0.0, 1.0).astype(np.float32)  # [N, G]
    for gi in range(g):
        idx = np.flatnonzero(look.group == gi)
        strengths[:, idx] = ((1.0 - lam[:, gi:gi + 1]) * strengths[:, idx]
                             + lam[:, gi:gi + 1] * confused[:, idx])
    noise = rng.normal(0.0, params.strength_noise, size=strengths.shape).astype(np.float32)
    strengths = np.clip(strengths + noise, 0.0, None).astype(np.float32)
    # Clutter blobs: a random render dim each, at the first of 8 candidate cells away from every
    # visible part (else the farthest candidate).
    n_blobs = np.minimum(rng.poisson(params.clutter, size=n), MAX_BLOBS)
    blob_on = np.arange(MAX_BLOBS)[None] < n_blobs[:, None]
    blob_dim = rng.integers(len(look.group), size=(n, MAX_BLOBS))
    cand = rng.uniform(0, side - 1, size=(n, MAX_BLOBS, 8, 2))
    d = np.sqrt(((cand[:, :, :, None, :] - centres[:, None, None, :, :]) ** 2).sum(-1))  # [N, M, 8, G]
    d = np.where(visible[:, None, None, :], d, np.inf).min(axis=-1)  # [N, M, 8]
    ok = d > 1.5 * width[:, None, None]
    pick = np.where(ok.any(axis=-1), ok.argmax(axis=-1), d.argmax(axis=-1))  # [N, M]
    blob_pos = np.take_along_axis(cand, pick[:, :, None, None], axis=2)[:, :, 0].astype(np.float32)

    render_st = replace(st, att_group=look.group, group_names=look.group_names, latent_w2v=look.latent_w2v,
                        strengths=look.strengths)
    protos = prototypes(render_st, params, rng)  # [L, F]
    gw = group_weights(render_st)  # [L, G]
    scaled = (protos * gw.sum(axis=1, keepdims=True)).astype(np.float32)
    f = params.feature_dim
    sq = 0.0
    for gi in range(g):
        idx = look.group == gi
        sq += float(((look.strengths[:, idx] @ scaled[idx]) ** 2).sum())
    part_norm = float(np.sqrt(sq / (k * g)))
    class_look = (params.class_look * part_norm / np.sqrt(f)
                  * rng.standard_normal((k, g, f))).astype(np.float32)
    env, env_res, env_vectors = _environments(st, look, protos, labels, split, params, env_rng)
    scene = Scene(labels, split, strengths, centres, visible, width, blob_dim, blob_pos, blob_on, env, env_res,
                  look.group, scaled, protos, class_look, part_norm, env_vectors, side)
    scene.context_amplitude = _context_amplitude(scene, params)
    return scene


def _confusers(strengths: np.ndarray, st: Structure, labels: np.ndarray, rng: np.random.Generator,
               nearest: int = 3) -> np.ndarray:
    """[N] per image a similar class of its side (seen / unseen): one of its class's 3 nearest."""
    s = strengths.astype(np.float64)
    sq = (s ** 2).sum(axis=1)
    d2 = sq[:, None] + sq[None] - 2.0 * s @ s.T  # [K, K]
    np.fill_diagonal(d2, np.inf)
    k = len(s)
    near = np.empty((k, nearest), dtype=np.int64)
    for side in (st.seen, st.unseen):
        sub = d2[np.ix_(side, side)]
        m = min(nearest, max(len(side) - 1, 1))
        order = np.argsort(sub, axis=1)[:, :m]
        near[side] = side[order[:, np.arange(nearest) % m]]
    return near[labels, rng.integers(nearest, size=len(labels))]


def _environments(st: Structure, look: Look, protos: np.ndarray, labels: np.ndarray, split: np.ndarray,
                  params: SimParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Environment pool and per-image environments (factual and resampled), from their own stream.

    Every draw is made whatever ``rho`` / ``unseen_shift`` are, so they change nothing else.
    """
    e, f, n, k = params.environments, params.feature_dim, len(labels), st.att.shape[1]
    own = rng.standard_normal((e, f))
    mix = np.zeros((e, f))
    n_attr = rng.integers(2, 5, size=e)
    for j in range(e):
        dims = rng.choice(len(look.group), size=min(int(n_attr[j]), len(look.group)), replace=False)
        mix[j] = rng.uniform(0.5, 1.0, size=len(dims)) @ protos[dims]

    def unit(m: np.ndarray) -> np.ndarray:
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    vectors = unit(params.env_own * unit(own) + (1.0 - params.env_own) * unit(mix)).astype(np.float32)
    e_seen = max(1, min(e - 1, int(round(e * 2 / 3)))) if e > 1 else 1
    preferred = np.empty(k, dtype=np.int64)
    preferred[st.seen] = rng.integers(e_seen, size=len(st.seen))
    preferred[st.unseen] = rng.integers(e_seen, e, size=len(st.unseen)) if e > e_seen else 0
    correlated = rng.random(n) < params.rho
    shifted = rng.random(n) < params.unseen_shift
    other_seen = st.seen[rng.integers(len(st.seen), size=n)]
    uniform = rng.integers(e, size=n)
    resampled = rng.integers(e, size=n)
    unseen = split == 2
    own_env = np.where(unseen & ~shifted, preferred[other_seen], preferred[labels])
    env = np.where(correlated, own_env, uniform).astype(np.int64)
    return env, resampled.astype(np.int64), vectors


def _context_amplitude(scene: Scene, params: SimParams) -> float:
    """a with E‖a·e·m‖² = context_strength · E‖part term‖², over a fixed probe of up to 256 images."""
    if params.context_strength == 0:
        return 0.0
    n = len(scene.labels)
    probe = np.unique(np.linspace(0, n - 1, min(n, 256)).astype(np.int64))
    part, obj = scene.parts(probe, None)
    mask = (1.0 - obj) + params.bleed * obj
    e_part = float((part.astype(np.float64) ** 2).sum(axis=(1, 2)).mean())
    e_mask = float((mask.astype(np.float64) ** 2).sum(axis=1).mean())  # env vectors are unit
    return float(np.sqrt(params.context_strength * e_part / e_mask)) if e_mask > 0 else 0.0


# --------------------------------------------------------------------------- writing
def write_dataset(tmp: Path, spec: DatasetSpec, preset: str, seed: int, params: SimParams,
                  data_root: str | os.PathLike[str] | None, progress: bool) -> dict[str, Any]:
    """Render the whole dataset (both stores) into the (empty) directory ``tmp``; return ``sim.json``."""
    rng = np.random.default_rng([seed, spec.sim_stream, 0])
    st, look, knobs = _structure(spec, rng, params, data_root)
    # The confounder has its own stream: changing rho, unseen_shift or context_strength leaves every
    # other latent and every noise draw as it was.
    env_rng = np.random.default_rng([seed, spec.sim_stream, 2])
    scene = _draw_scene(st, look, _counts(spec, st, params), params, rng, env_rng)
    n = len(scene.labels)
    splits = split_indices(scene, st)
    check_splits(splits, scene, st)
    meta = base_meta(type(params).VERSION, spec.name, preset, seed, params, st, n)
    meta["env_resampled_store"] = ENV_STORE_NAME
    meta["context_amplitude"] = scene.context_amplitude
    if knobs is not None:
        meta["semantic_fit"] = {"knobs": knobs, "targets": _targets(spec.name),
                                "achieved": semantic_stats(st.att, st.original_att, st.unseen)}

    write_index_files(tmp, spec, st, scene.labels, splits)
    r = params.grid_side ** 2
    masks = np.empty((n, r), dtype=np.float32)
    prov = store_provenance(meta)
    with StoreWriter(tmp / STORE_NAME, n, params.feature_dim, r, prov) as w, \
            StoreWriter(tmp / ENV_STORE_NAME, n, params.feature_dim, r,
                        {**prov, "environments": "resampled uniformly"}) as w_env:
        for ci, start in chunk_starts(n, params.chunk_size, spec.name, progress):
            rows = slice(start, min(start + params.chunk_size, n))
            # One stream per chunk: memory stays bounded, output does not depend on scheduling.
            crng = np.random.default_rng([seed, spec.sim_stream, 1, ci])
            (factual, resampled), masks[rows] = scene.render(
                rows, params, crng, [scene.environment, scene.environment_resampled])
            w.write(start, factual)
            w_env.write(start, resampled)
    np.savez(tmp / GROUND_TRUTH_NAME, centres=scene.centres, visible=scene.visible,
             context=scene.environment, att_group=st.att_group, group_names=np.array(look.group_names),
             grid_side=np.int64(params.grid_side), labels=scene.labels,
             environment=scene.environment, environment_resampled=scene.environment_resampled,
             context_mask=masks, strengths=scene.strengths, class_strengths=look.strengths,
             render_group=look.group, kernel_width=scene.width,
             context_amplitude=np.float64(scene.context_amplitude))
    (tmp / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return meta


# --------------------------------------------------------------------------- checks
def oracle_accuracy(ddir: str | os.PathLike[str]) -> float:
    """Mean per-class accuracy of classifying each unseen test image's TRUE latent strengths by the
    nearest unseen class (Euclidean, to the class strengths the images were drawn from; v2 data).

    The ceiling of any method on the evidence before rendering: below 1 when class gap, part mixing
    and strength noise make images of one class look like another.
    """
    ddir = Path(ddir)
    with np.load(ddir / GROUND_TRUTH_NAME) as gt:
        if "strengths" not in gt.files:
            raise DataError(f"{ddir / GROUND_TRUTH_NAME}: no latent strengths (not a generator-v2 dataset)")
        s, cs, labels = gt["strengths"], gt["class_strengths"], gt["labels"]
    with np.load(ddir / "image_index.npz") as idx:
        rows, unseen = idx["test_unseen_loc"], idx["unseenclasses"]
    x, c = s[rows].astype(np.float64), cs[unseen].astype(np.float64)
    d2 = (x ** 2).sum(1)[:, None] - 2 * x @ c.T + (c ** 2).sum(1)[None]
    pred = unseen[d2.argmin(axis=1)]
    truth = labels[rows]
    return float(np.mean([np.mean(pred[truth == u] == u) for u in unseen]))
