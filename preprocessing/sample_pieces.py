"""The embedded dataset's selection: which pieces of music21's bundled corpus are rendered, and why.

A fixed, literal list (a piece that fails to render stops the rendering; the dataset never silently
shrinks), chosen for windows per second of rendering across several periods and textures. How each
collection was measured, and what was left out and why, is in ``docs/ARCHITECTURE.md`` ("The
embedded dataset"). Changing the list changes the cache folder's name, so it is rendered afresh.
"""

from __future__ import annotations

_BACH_CHORALES: tuple[str, ...] = (
    "bach/bwv36.4-2.mxl",
    "bach/bwv66.6.mxl",
    "bach/bwv77.6.mxl",
    "bach/bwv108.6.mxl",
    "bach/bwv245.3.mxl",
    "bach/bwv248.12-2.mxl",
    "bach/bwv269.mxl",
    "bach/bwv271.mxl",
    "bach/bwv283.mxl",
    "bach/bwv329.mxl",
    "bach/bwv398.mxl",
    "bach/bwv411.mxl",
)

_PALESTRINA: tuple[str, ...] = (
    "palestrina/Agnus_I_09.krn",
    "palestrina/Agnus_I_81.krn",
    "palestrina/Benedictus_50.krn",
    "palestrina/Benedictus_93_a.krn",
    "palestrina/Credo_43_c.krn",
    "palestrina/Credo_63_b.krn",
    "palestrina/Credo_73_a.krn",
    "palestrina/Credo_85_b.krn",
    "palestrina/Credo_b.krn",
    "palestrina/Gloria_27.krn",
    "palestrina/Sanctus_03_a.krn",
    "palestrina/Sanctus_71_b.krn",
    "palestrina/Sanctus_87_a.krn",
    "palestrina/Sanctus_97.krn",
)

_TRECENTO: tuple[str, ...] = (
    "trecento/PMFC_04-A lle s_andra lo spirt.xml",
    "trecento/PMFC_04-Si dolce non sono.xml",
    "trecento/PMFC_06-Jacopo-01-Aquila-Altera.xml",
    "trecento/PMFC_06-Jacopo-02-Con-Gran-Furor.xml",
    "trecento/PMFC_06-Jacopo-03a-Di_Novo.xml",
    "trecento/PMFC_06-Jacopo-03b-Di_Novo.xml",
    "trecento/PMFC_06_8-In Verde Prato.xml",
    "trecento/PMFC_06_10-I senti gia come l_arco.xml",
    "trecento/PMFC_06_Giovanni-01-Angnel_son_biancho.xml",
    "trecento/PMFC_06_Giovanni-02-Apress_un_fiume_a.xml",
    "trecento/PMFC_06_Giovanni-03-Chon_brachi_assai.xml",
    "trecento/PMFC_06_Giovanni-05_Donna_Gia_Fu_Leggiadra.xml",
    "trecento/PMFC_06_Giovanni-06_Fra_Mille_Corvi.xml",
    "trecento/PMFC_06_Giovanni-07_In_Sulla_Ripa.xml",
    "trecento/PMFC_06_Giovanni-09_Nascoso_El_Viso.xml",
    "trecento/PMFC_06_Piero_1-All_onbra d_un perlato.xml",
    "trecento/PMFC_12_16-Sanctus PMFC12.16.xml",
    "trecento/PMFC_13_10-Gloria.xml",
    "trecento/PMFC_23_15b-Kyrie Humano Generi b.xml",
    "trecento/PMFC_23_17-Kyrie Principum Effectivum.xml",
    "trecento/PMFC_23_20-Kyrie O Sacra Virgo Beata.xml",
    "trecento/PMFC_23_21-Kyrie Guymont.xml",
    "trecento/PMFC_23_22-Kyrie Summe Clementissime.xml",
    "trecento/PMFC_24_16-Albane misse celitus.xml",
    "trecento/PMFC_24_20-Padu... serenans.xml",
    "trecento/PMFC_24_22-O beatum incendium.xml",
)

_MONTEVERDI: tuple[str, ...] = (
    "monteverdi/madrigal.3.1.mxl",
    "monteverdi/madrigal.3.2.mxl",
    "monteverdi/madrigal.3.3.mxl",
    "monteverdi/madrigal.3.4.mxl",
    "monteverdi/madrigal.3.5.mxl",
    "monteverdi/madrigal.3.6.mxl",
    "monteverdi/madrigal.3.7.mxl",
    "monteverdi/madrigal.3.8.mxl",
    "monteverdi/madrigal.3.10.mxl",
    "monteverdi/madrigal.3.11.mxl",
    "monteverdi/madrigal.3.12.mxl",
    "monteverdi/madrigal.3.16.mxl",
    "monteverdi/madrigal.3.17.mxl",
    "monteverdi/madrigal.3.18.mxl",
    "monteverdi/madrigal.4.1.mxl",
    "monteverdi/madrigal.4.2.mxl",
    "monteverdi/madrigal.4.3.mxl",
    "monteverdi/madrigal.4.4.mxl",
    "monteverdi/madrigal.4.5.mxl",
    "monteverdi/madrigal.4.6.mxl",
    "monteverdi/madrigal.4.7.mxl",
    "monteverdi/madrigal.4.8.mxl",
    "monteverdi/madrigal.4.10.mxl",
    "monteverdi/madrigal.4.11.mxl",
    "monteverdi/madrigal.4.12.mxl",
    "monteverdi/madrigal.4.13.mxl",
    "monteverdi/madrigal.4.14.mxl",
    "monteverdi/madrigal.4.15.mxl",
    "monteverdi/madrigal.4.16.mxl",
    "monteverdi/madrigal.4.17.mxl",
    "monteverdi/madrigal.4.18.mxl",
    "monteverdi/madrigal.4.19.mxl",
    "monteverdi/madrigal.4.20.mxl",
    "monteverdi/madrigal.5.1.mxl",
    "monteverdi/madrigal.5.2.mxl",
)

_QUARTETS_AND_PIANO: tuple[str, ...] = (
    "haydn/opus1no1/movement1.mxl",
    "haydn/opus1no1/movement2.mxl",
    "haydn/opus1no1/movement3.mxl",
    "joplin/maple_leaf_rag.mxl",
    "mozart/k80/movement2.mxl",
    "mozart/k80/movement4.mxl",
)

PIECES: tuple[str, ...] = (
    _QUARTETS_AND_PIANO + _MONTEVERDI + _PALESTRINA + _TRECENTO + _BACH_CHORALES
)
"""The default selection, as paths inside music21's corpus (``corpus.getWork`` resolves them).

A mix of periods and textures so that the model sees more than one style: string-quartet movements
(Mozart K. 80, Haydn op. 1 no. 1), Joplin's Maple Leaf Rag (piano), five-voice Monteverdi madrigals,
Palestrina mass movements (Humdrum kern), 14th-century Italian ballate and mass movements
(trecento), and Bach chorales. Full paths with extensions, because some works exist in two formats
(``beethoven/opus18no1/movement1`` is both ``.krn`` and ``.mxl``). Changing it changes
``sample_data.DEFAULT_DIR``, so the cache is rendered afresh.
"""
