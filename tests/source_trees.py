"""Tiny trees in the real downloads' layouts, with the exact real file names and the awkward cases,
and what each adapter must make of them: shared by test_sources.py (adapter level) and
test_ingest.py (through the CLI)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 60, 40)).save(buf, format=fmt)
    return buf.getvalue()


JPEG, PNG, BMP = _image("JPEG"), _image("PNG"), _image("BMP")


def put(root: Path, *rels: str, data: bytes = JPEG) -> None:
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@dataclass
class Tree:
    """What the adapter must report: records (rel, label, patient, split), rejections (rel, reason),
    skipped files per kind."""

    fmt: str
    records: list[tuple[str, str, str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def found(self) -> int:
        return len(self.records) + len(self.rejected)


def misplaced(fmt: str) -> str:
    from endoctl.sources import REGISTRY

    return f"not in the {fmt} layout {REGISTRY[fmt].layout}"


# ------------------------------------------------------------------------------------------- ERS


def ers_tree(root: Path, prefix: str = "") -> Tree:
    """cvlab-ai/endoscopy's test tree (0001/samples/{frames,labels}) plus sequences and bad cases;
    ``prefix`` puts the patients one level down (``precise-samples/``)."""
    p = prefix
    frames = {  # frame -> its masks ("" content = 0-byte mask)
        "0001/samples/frames/000001.png": ["000001_c01_c02.png", "000001_c01_c03.png", "000001_c03_c04.png"],
        "0001/samples/frames/000002.png": ["000002_h02.png"],
        "0001/samples/frames/000003.png": ["000003_c01.png:0"],
        "0001/samples/frames/000004.png": ["000004_H01.png:0"],
        "0001/samples/frames/000005.png": ["000005_c01_c02_h01.png"],
        "0001/samples/frames/000006.png": [],
        "0001/samples/frames/000007.png": ["000007_c1x.png"],
        "0001/samples/frames/000008.png": ["000008_h02.png", "000008_x01.png"],
        "0001/seq_01/frames/000120.png": ["000120_g14.png"],
        "0001/seq_01/frames/000121.png": ["000121_g14_q02.png:0"],
        "0002/seq_03/frames/000001.png": ["000001_c22.png"],
    }
    masks = 0
    for frame, names in frames.items():
        put(root, p + frame, data=PNG)
        for name in names:
            name, _, empty = name.partition(":")
            put(root, f"{p}{frame.rsplit('/', 2)[0]}/labels/{name}", data=b"" if empty else PNG)
            masks += 1
    put(root, f"{p}0001/samples/labels/000009_b01.png", data=PNG)  # a mask without its frame
    put(
        root,
        f"{p}0003/samples/frames/000001.png",
        f"{p}abc/samples/frames/000001.png",
        f"{p}0001/samples/other/000001.png",
        data=PNG,
    )
    put(root, f"{p}0002/seq_03/notes.txt", data=b"x")
    return Tree(
        "ers",
        records=[
            (f"{p}0001/samples/frames/000001.png", "c01|c02|c03|c04", "0001", ""),
            (f"{p}0001/samples/frames/000002.png", "h02", "0001", ""),
            (f"{p}0001/samples/frames/000003.png", "c01", "0001", ""),
            (f"{p}0001/samples/frames/000004.png", "h01", "0001", ""),
            (f"{p}0001/samples/frames/000005.png", "c01|c02|h01", "0001", ""),
            (f"{p}0001/seq_01/frames/000120.png", "g14", "0001", ""),
            (f"{p}0001/seq_01/frames/000121.png", "g14|q02", "0001", ""),
            (f"{p}0002/seq_03/frames/000001.png", "c22", "0002", ""),
        ],
        rejected=[
            (
                f"{p}0001/samples/frames/000006.png",
                "no mask in ../labels/ names this frame (expected 000006_<code>….png)",
            ),
            (
                f"{p}0001/samples/frames/000007.png",
                "mask 000007_c1x.png: 'c1x' is not an ERS code (a letter and 2 digits)",
            ),
            (
                f"{p}0001/samples/frames/000008.png",
                "mask 000008_x01.png: unknown ERS code 'x01' (known: b01-b02, c01-c34, g01-g70, h01-h07, q01-q10)",
            ),
            (f"{p}0001/samples/labels/000009_b01.png", "annotation mask for frame 000009, which is not in ../frames/"),
            (f"{p}0003/samples/frames/000001.png", "no labels/ folder beside this frames/ folder"),
            (f"{p}0001/samples/other/000001.png", misplaced("ers")),
            (f"{p}abc/samples/frames/000001.png", misplaced("ers")),
        ],
        skipped={"annotation masks": masks, "metadata/hidden files": 1},
    )


# ----------------------------------------------------------------------------------------- LIMUC


def limuc_tree(root: Path) -> Tree:
    tree = "patient_based_classified_images"
    put(
        root,
        f"{tree}/11/Mayo 0/UC_patient_11_1.bmp",
        f"{tree}/11/Mayo 2/UC_patient_11_2.bmp",
        f"{tree}/11/Mayo 3/extra.bmp",
        f"{tree}/11/Mayo 1/UC_patient_12_3.bmp",
        f"{tree}/11/Mayo 4/UC_patient_11_4.bmp",
        "train_and_validation_sets/Mayo 2/UC_patient_11_2.bmp",
        "test_set/Mayo 0/UC_patient_11_1.bmp",
        "test_set/Mayo 3/oops.bmp",
        "test_set/UC_patient_5_1.bmp",
        data=BMP,
    )
    put(root, "cross_validation_folds_train_val_info/fold_0/val.json", data=b'{"Mayo 0": ["UC_patient_11_1.bmp"]}')
    return Tree(
        "limuc",
        records=[
            (f"{tree}/11/Mayo 0/UC_patient_11_1.bmp", "Mayo 0", "11", "test"),
            (f"{tree}/11/Mayo 2/UC_patient_11_2.bmp", "Mayo 2", "11", "train_val"),
            (f"{tree}/11/Mayo 3/extra.bmp", "Mayo 3", "11", ""),
            ("test_set/Mayo 0/UC_patient_11_1.bmp", "Mayo 0", "11", "test"),
            ("train_and_validation_sets/Mayo 2/UC_patient_11_2.bmp", "Mayo 2", "11", "train_val"),
        ],
        rejected=[
            (f"{tree}/11/Mayo 1/UC_patient_12_3.bmp", "file name names patient 12, its folder patient 11"),
            (f"{tree}/11/Mayo 4/UC_patient_11_4.bmp", "folder 'Mayo 4' is not one of Mayo 0, Mayo 1, Mayo 2, Mayo 3"),
            ("test_set/Mayo 3/oops.bmp", "file name is not UC_patient_<id>_<n>: no patient id"),
            ("test_set/UC_patient_5_1.bmp", misplaced("limuc")),
        ],
        skipped={"metadata/hidden files": 1},
    )


# ------------------------------------------------------------------------------------ MedFMC Endo

MEDFMC_TRAIN = (  # the real columns plus an unnamed extra one; 0/1 findings in their real order
    "img_id,study_id,source,ulcer,erosion,polyp,tumor\n"
    "13333_2021.11_0003_55200215.png,13333_2021.11_0003,r,0,1,1,0\n"
    "13333_2021.09_0001_51688669.png,13333_2021.09_0001,r,0,0,0,0\n"
    "13333_2021.09_0001_51688671.png,13333_2021.09_0001,r,0,0,2,0\n"
    "13333_2021.09_0001_99999999.png,13333_2021.09_0001,r,1,0,0,0\n"
)
MEDFMC_VAL = (  # columns in another order: found by name
    "tumor,img_id,polyp,erosion,ulcer,extra\n1,14000_2022.01_0007_1.png,0,0,1,x\n"
)


def medfmc_tree(root: Path) -> Tree:
    train, val = "MedFMC_train/endo", "MedFMC_val/endo"
    put(
        root,
        f"{train}/images/13333_2021.11_0003_55200215.png",
        f"{train}/images/13333_2021.09_0001_51688669.png",
        f"{train}/images/13333_2021.09_0001_51688670.png",
        f"{train}/images/13333_2021.09_0001_51688671.png",
        f"{val}/image/14000_2022.01_0007_1.png",
        f"{val}/image/14000_2022.01_0007_2.png",
        data=PNG,
    )
    (root / train / "endo_train.csv").write_text(MEDFMC_TRAIN)
    (root / val / "endo_val.csv").write_text(MEDFMC_VAL)
    (root / val / "test_WithLabel.txt").write_text(
        "14000_2022.01_0007_1.png 0 0 0 0\n14000_2022.01_0007_2.png 1 0 0 0\n"
    )
    return Tree(
        "medfmc-endo",
        records=[
            (f"{train}/images/13333_2021.09_0001_51688669.png", "normal", "13333_2021.09_0001", "train"),
            (f"{train}/images/13333_2021.11_0003_55200215.png", "erosion|polyp", "13333_2021.11_0003", "train"),
            (f"{val}/image/14000_2022.01_0007_1.png", "tumor|ulcer", "14000_2022.01_0007", "val"),
            (f"{val}/image/14000_2022.01_0007_2.png", "ulcer", "14000_2022.01_0007", "test"),
        ],
        rejected=[
            (f"{train}/images/13333_2021.09_0001_51688670.png", "not listed in endo_train.csv"),
            (f"{train}/images/13333_2021.09_0001_51688671.png", "endo_train.csv row 4: polyp is '2', not 0 or 1"),
            (f"{train}/images/13333_2021.09_0001_99999999.png", "listed in endo_train.csv but not found"),
        ],
        skipped={"metadata/hidden files": 3},
    )


# --------------------------------------------------------------------------------------- CrohnIPI

CROHNIPI_CSV = (  # ISO-8859-1, with a non-ASCII byte in a comment column
    "Frame name,Label,Fold,Remarque\n"
    "00001.jpg,N,1,\n00002.jpg,U>10,2,\n00003.jpg,U3-10,5,\n00004.jpg,AU,3,aphte isolée\n"
    "00005.jpg,E,4,\n00006.jpg,O,4,\n00007.jpg,S,2,\n00008.jpg,X,1,\n00009.jpg,S,7,\n00099.jpg,E,4,\n00098.jpg,Z,1,\n"
)


def crohnipi_tree(root: Path) -> Tree:
    names = [f"imgs/{k:05d}.jpg" for k in range(1, 11)]
    put(root, *names, "stray.jpg")
    (root / "CrohnIPI_description.csv").write_bytes(CROHNIPI_CSV.encode("iso-8859-1"))
    labels = ["N", "U>10", "U3-10", "AU", "E", "O", "S"]
    folds = [1, 2, 5, 3, 4, 4, 2]
    return Tree(
        "crohnipi",
        records=[(names[k], label, "", f"fold_{fold}") for k, (label, fold) in enumerate(zip(labels, folds))],
        rejected=[
            ("imgs/00008.jpg", "CrohnIPI_description.csv row 9: label 'X' is not one of N, E, O, AU, U3-10, U>10, S"),
            ("imgs/00009.jpg", "CrohnIPI_description.csv row 10: fold '7' is not 1-5"),
            ("imgs/00010.jpg", "not listed in CrohnIPI_description.csv"),
            ("imgs/00099.jpg", "listed in CrohnIPI_description.csv but not found"),
            (
                "imgs/00098.jpg",
                "CrohnIPI_description.csv row 12: label 'Z' is not one of N, E, O, AU, U3-10, U>10, S; image not found",
            ),
            ("stray.jpg", misplaced("crohnipi")),
        ],
        skipped={"metadata/hidden files": 1},
    )


# -------------------------------------------------------------------------------------------- KID


def kid_tree(root: Path) -> Tree:
    """KID 2 and KID 1 folders as the archives spell them, their masks, and a misplaced file."""
    images = {
        "vascular/vascular001.png": "vascular",
        "inflammatory/inflammatory5.png": "inflammatory",
        "polypoid/polypoid37.png": "polypoid",
        "polypoid/polypoid5~0.png": "polypoid",
        "normal-esophagus/normaleso1.png": "normal-esophagus",
        "normal-small-bowel/normalsb1.png": "normal-small-bowel",
        "normal-colon/normalcolon3.png": "normal-colon",
        "normal-stomach/normalstomach2.png": "normal-stomach",
        "ampulla-of-vater/ampulla1.png": "ampulla-of-vater",
        "Angioectasias/angioectasia-P0-2.png": "Angioectasias",
        "active bleeding/bleeding3.png": "active bleeding",
    }
    put(
        root,
        *images,
        "vascular-annotations/vascular001m.png",
        "inflammatory/inflammatory5m.png",
        "polypoid/deeper/x/polypoid1.png",
        data=PNG,
    )
    return Tree(
        "kid",
        records=sorted((rel, label, "", "") for rel, label in images.items()),
        rejected=[("polypoid/deeper/x/polypoid1.png", misplaced("kid"))],
        skipped={"annotation masks": 2},
    )


def kid_flat_tree(root: Path) -> Tree:
    """KID images as CE24 ships them: flat, re-saved as .jpg, names kept."""
    stems = {
        "angioectasia-P0-1": "angioectasia",
        "normaleso53": "normaleso",
        "polypoid5~0": "polypoid",
        "normalcolon7": "normalcolon",
        "lymphangiectasia1": "lymphangiectasia",
        "bleeding2": "bleeding",
    }
    put(root, *(f"{s}.jpg" for s in stems), "1234.jpg")
    return Tree(
        "kid",
        records=sorted((f"{s}.jpg", label, "", "") for s, label in stems.items()),
        rejected=[("1234.jpg", misplaced("kid"))],
    )


# ----------------------------------------------------------------------------------------- SEE-AI

SEE_AI_BOXES = {
    "image00001": "1 0.497552 0.364138 0.230455 0.214136\n9 0.531747 0.498954 0.876187 0.889307\n"
    "1 0.693717 0.293715 0.236420 0.224914\n",
    "image00003": "",
    "image00004": "5 0.5 0.5 0.1 0.1\n4 0.5 0.5 0.1 0.1\n\n10 0.5 0.5 0.1 0.1\n6 0.5 0.5 0.1 0.1\n",
    "image00005": "1 0.5 0.5 0.1 0.1\n12 0.5 0.5 0.1 0.1\n",
    "image00006": "3 0.5 0.5 0.1\n",
    "image00007": "1 0.5 abc 0.1 0.1\n",
    "image00008": "7 0.5 0.5 0.1 0.1\n",
    "image00009": "0 .1 .1 .1 .1\n2 .1 .1 .1 .1\n3 .1 .1 .1 .1\n8 .1 .1 .1 .1\n11 .1 .1 .1 .1\n",
    "image09999": "1 0.5 0.5 0.1 0.1\n",  # a box file without its image
}


def see_ai_tree(root: Path, nested: bool = False) -> Tree:
    """The release layout; ``nested`` as the Kaggle archive unpacks (each folder inside one of the same name)."""
    images = "SEE_AI_project_all_images" + ("/SEE_AI_project_all_images" if nested else "")
    boxes = "SEE_AI_project_all_txt" + ("/SEE_AI_project_all_txt" if nested else "")
    put(root, *(f"{images}/image{k:05d}.jpg" for k in range(1, 10)), "detected_samplevideo_short/frame1.jpg")
    for stem, text in SEE_AI_BOXES.items():
        put(root, f"{boxes}/{stem}.txt", data=text.encode())
    put(root, "all_annotation.csv", data=b"angiodysplasia,erosion\n0,1\n")
    return Tree(
        "see-ai",
        records=[
            (f"{images}/image00001.jpg", "erosion|erythema", "", ""),
            (f"{images}/image00002.jpg", "normal", "", ""),
            (f"{images}/image00003.jpg", "normal", "", ""),
            (f"{images}/image00004.jpg", "SMT|foreign body|lymph follicle|polyp-like", "", ""),
            (f"{images}/image00008.jpg", "bleeding", "", ""),
            (f"{images}/image00009.jpg", "angiodysplasia|diverticulum|lymphangiectasia|stenosis|vein", "", ""),
        ],
        rejected=[
            (f"{images}/image00005.jpg", f"{boxes}/image00005.txt line 2: unknown class id '12' (0-11)"),
            (
                f"{images}/image00006.jpg",
                f"{boxes}/image00006.txt line 1: expected 'cls cx cy w h', got '3 0.5 0.5 0.1'",
            ),
            (
                f"{images}/image00007.jpg",
                f"{boxes}/image00007.txt line 1: box values '0.5 abc 0.1 0.1' are not numbers",
            ),
            (f"{boxes}/image09999.txt", "box file without an image image09999.* in SEE_AI_project_all_images/"),
            ("detected_samplevideo_short/frame1.jpg", misplaced("see-ai")),
        ],
        skipped={"box files": len(SEE_AI_BOXES) - 1, "metadata/hidden files": 1},
    )


# ------------------------------------------------------------- Kvasir-Capsule, HyperKvasir, CE24


def kvasir_capsule_tree(root: Path) -> Tree:
    """The official split files as simula/kvasir-capsule spells and places them (official_splits/split_k.csv)."""
    ncm = "labelled_images/Normal clean mucosa"
    put(
        root,
        f"{ncm}/0728084c8da942d9_22803.jpg",
        f"{ncm}/0728084c8da942d9_22804.jpg",
        "labelled_images/Blood - fresh/renamed.jpg",
        "labelled_images/stray.jpg",
    )
    (root / "metadata.csv").write_text(
        "filename;video_id;frame_number;finding_category;finding_class;x1;y1;x2;y2;x3;y3;x4;y4\n"
        "renamed.jpg;feedfacefeedface;7;Luminal;Blood - fresh;1;2;3;4;5;6;7;8\n"
    )
    put(root, "official_splits/split_0.csv", data=b"filename,label\n0728084c8da942d9_22803.jpg,Normal\n")
    put(root, "official_splits/split_1.csv", data=b"filename,label\nrenamed.jpg,Blood\n")
    return Tree(
        "kvasir-capsule",
        records=[
            ("labelled_images/Blood - fresh/renamed.jpg", "Blood - fresh", "feedfacefeedface", "split_1"),
            (f"{ncm}/0728084c8da942d9_22803.jpg", "Normal clean mucosa", "0728084c8da942d9", "split_0"),
            (f"{ncm}/0728084c8da942d9_22804.jpg", "Normal clean mucosa", "0728084c8da942d9", ""),
        ],
        rejected=[("labelled_images/stray.jpg", misplaced("kvasir-capsule"))],
        skipped={"metadata/hidden files": 3},
    )


HK_POLYP = "labeled-images/lower-gi-tract/pathological-findings/polyps/4bf58f1c-8233-41fc-9614-344e6d0fc351.jpg"
HK_ZLINE = "labeled-images/upper-gi-tract/anatomical-landmarks/z-line/9c3e5380-9621-4e74-b937-0c46f37e7ef3.jpg"


def hyperkvasir_tree(root: Path) -> Tree:
    put(root, HK_POLYP, HK_ZLINE, "unlabeled-images/images/1f4a.jpg", "segmented-images/images/7777.jpg")
    put(
        root,
        "official_splits/2_fold_split.csv",
        data=(
            b"file-name;class-name;split-index\n4bf58f1c-8233-41fc-9614-344e6d0fc351.jpg;polyp;1\n"
            b"9c3e5380-9621-4e74-b937-0c46f37e7ef3.jpg;z-line;0\n"
        ),
    )
    return Tree(
        "hyperkvasir",
        records=[
            (HK_POLYP, "polyps", "", "split_1"),
            (HK_ZLINE, "z-line", "", "split_0"),
            ("unlabeled-images/images/1f4a.jpg", "", "", ""),
        ],
        rejected=[("segmented-images/images/7777.jpg", misplaced("hyperkvasir"))],
        skipped={"metadata/hidden files": 1},
    )


def ce24_aiims_tree(root: Path) -> Tree:
    """CE24's AIIMS frames: six videos ulcer1-3 and worm1-3; KID names carry no patient."""
    rels = {
        "training/Ulcer/AIIMS/ulcer1_1024.jpg": ("Ulcer", "AIIMS/ulcer1"),
        "validation/Ulcer/AIIMS/ulcer1_1034.jpg": ("Ulcer", "AIIMS/ulcer1"),
        "training/Worms/AIIMS/worm3_12.jpg": ("Worms", "AIIMS/worm3"),
        "training/Angioectasia/KID/angioectasia-P0-1.jpg": ("Angioectasia", ""),
        "validation/Polyp/KID/polypoid4~0.jpg": ("Polyp", ""),
        "training/Normal/KVASIR/3ada4222967f421d_30.jpg": ("Normal", "KVASIR/3ada4222967f421d"),
    }
    put(root, *rels)
    return Tree(
        "ce24", records=sorted((rel, label, patient, rel.split("/")[0]) for rel, (label, patient) in rels.items())
    )


TREES = {
    "ers": ers_tree,
    "limuc": limuc_tree,
    "medfmc-endo": medfmc_tree,
    "crohnipi": crohnipi_tree,
    "kid": kid_tree,
    "see-ai": see_ai_tree,
    "kvasir-capsule": kvasir_capsule_tree,
    "hyperkvasir": hyperkvasir_tree,
    "ce24": ce24_aiims_tree,
}
