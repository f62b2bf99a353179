"""Reference data of the province: ministries, their services, data categories, purposes
and legal authorities. Loaded by ``onceonly seed``.

Data category and purpose terms follow the W3C Data Privacy Vocabulary (``dpv:``,
``pd:``) where it has one; ``None`` where it has not.
"""

from __future__ import annotations

# (code, English name, French name, [(system code, English, French), ...])
MINISTRIES: list[tuple[str, str, str, list[tuple[str, str, str]]]] = [
    (
        "MPBSDP",
        "Ministry of Public and Business Service Delivery and Procurement",
        "Ministère des Services au public et aux entreprises et de l'Approvisionnement",
        [
            ("serviceontario", "ServiceOntario", "ServiceOntario"),
            (
                "vital-statistics",
                "Office of the Registrar General",
                "Bureau du registraire général",
            ),
        ],
    ),
    (
        "MOH",
        "Ministry of Health",
        "Ministère de la Santé",
        [
            ("ohip", "Ontario Health Insurance Plan (OHIP)", "Assurance-santé de l'Ontario (OHIP)"),
            ("odb", "Ontario Drug Benefit", "Programme de médicaments de l'Ontario"),
        ],
    ),
    (
        "MTO",
        "Ministry of Transportation",
        "Ministère des Transports",
        [
            (
                "driver-licensing",
                "Driver and vehicle licensing",
                "Permis de conduire et immatriculation",
            ),
        ],
    ),
    (
        "FIN",
        "Ministry of Finance",
        "Ministère des Finances",
        [("tax-benefits", "Ontario tax credits and benefits", "Crédits d'impôt et prestations")],
    ),
    (
        "MCURES",
        "Ministry of Colleges, Universities, Research Excellence and Security",
        "Ministère des Collèges et Universités, de l'Excellence en recherche et de la Sécurité",
        [
            (
                "osap",
                "Ontario Student Assistance Program (OSAP)",
                "Régime d'aide financière aux étudiantes et étudiants de l'Ontario (RAFEO)",
            )
        ],
    ),
    (
        "MCCSS",
        "Ministry of Children, Community and Social Services",
        "Ministère des Services à l'enfance et des Services sociaux et communautaires",
        [
            ("ontario-works", "Ontario Works", "Ontario au travail"),
            (
                "odsp",
                "Ontario Disability Support Program",
                "Programme ontarien de soutien aux personnes handicapées",
            ),
        ],
    ),
    (
        "EDU",
        "Ministry of Education",
        "Ministère de l'Éducation",
        [
            (
                "oen",
                "Ontario Education Number registry",
                "Registre du numéro d'immatriculation scolaire de l'Ontario",
            )
        ],
    ),
    (
        "MLITSD",
        "Ministry of Labour, Immigration, Training and Skills Development",
        "Ministère du Travail, de l'Immigration, de la Formation et du Développement des compétences",
        [
            ("employment-ontario", "Employment Ontario", "Emploi Ontario"),
            (
                "oinp",
                "Ontario Immigrant Nominee Program",
                "Programme ontarien des candidats à l'immigration",
            ),
        ],
    ),
    (
        "MAG",
        "Ministry of the Attorney General",
        "Ministère du Procureur général",
        [("court-services", "Court Services", "Services aux tribunaux")],
    ),
    (
        "SOLGEN",
        "Ministry of the Solicitor General",
        "Ministère du Solliciteur général",
        [("opp", "Ontario Provincial Police", "Police provinciale de l'Ontario")],
    ),
    (
        "MMAH",
        "Ministry of Municipal Affairs and Housing",
        "Ministère des Affaires municipales et du Logement",
        [("housing", "Housing programs", "Programmes de logement")],
    ),
    (
        "MSAA",
        "Ministry for Seniors and Accessibility",
        "Ministère des Services aux aînés et de l'Accessibilité",
        [("seniors", "Seniors' programs", "Programmes pour les aînés")],
    ),
    # Not a ministry but the Legislature's privacy officer: the home of the audit API's
    # clients (`onceonly clients add --ministry IPC --system ipc-audit --scopes audit`).
    (
        "IPC",
        "Information and Privacy Commissioner of Ontario",
        "Commissaire à l'information et à la protection de la vie privée de l'Ontario",
        [("ipc-audit", "Ledger audit", "Audit du registre")],
    ),
]

# (code, DPV term, English, French)
DATA_CATEGORIES: list[tuple[str, str | None, str, str]] = [
    ("name", "pd:Name", "Name", "Nom"),
    ("birth-date", "pd:BirthDate", "Date of birth", "Date de naissance"),
    ("address", "pd:PhysicalAddress", "Home address", "Adresse du domicile"),
    ("email", "pd:EmailAddress", "E-mail address", "Adresse courriel"),
    ("phone", "pd:TelephoneNumber", "Telephone number", "Numéro de téléphone"),
    ("health-number", "pd:OfficialID", "Health card number", "Numéro de carte Santé"),
    ("health-record", "pd:HealthRecord", "Health records", "Dossiers de santé"),
    ("driver-licence", "pd:OfficialID", "Driver's licence", "Permis de conduire"),
    ("income", "pd:Income", "Income", "Revenu"),
    ("tax-record", "pd:Tax", "Tax records", "Dossiers fiscaux"),
    ("family", "pd:FamilyStructure", "Family composition", "Composition de la famille"),
    ("education-record", "pd:EducationQualification", "Education records", "Dossiers scolaires"),
    ("employment", "pd:EmploymentHistory", "Employment", "Emploi"),
    ("disability", "pd:Disability", "Disability status", "Situation de handicap"),
    ("immigration-status", None, "Immigration status", "Statut d'immigration"),
]

# (code, DPV term, English, French)
PURPOSES: list[tuple[str, str | None, str, str]] = [
    (
        "service-provision",
        "dpv:ServiceProvision",
        "Provide a service you asked for",
        "Fournir un service demandé",
    ),
    (
        "eligibility",
        "dpv:EstablishContractualAgreement",
        "Check your eligibility for a program",
        "Vérifier votre admissibilité à un programme",
    ),
    (
        "identity-verification",
        "dpv:IdentityVerification",
        "Verify your identity",
        "Vérifier votre identité",
    ),
    (
        "licence-renewal",
        "dpv:ServiceProvision",
        "Renew a licence or card",
        "Renouveler un permis ou une carte",
    ),
    (
        "benefit-calculation",
        "dpv:ServiceProvision",
        "Calculate a benefit or credit",
        "Calculer une prestation ou un crédit",
    ),
    (
        "fraud-prevention",
        "dpv:FraudPreventionAndDetection",
        "Prevent and detect fraud",
        "Prévenir et détecter la fraude",
    ),
    (
        "law-enforcement",
        "dpv:LegalCompliance",
        "Law enforcement investigation",
        "Enquête d'application de la loi",
    ),
    ("legal-compliance", "dpv:LegalCompliance", "Comply with a law", "Se conformer à une loi"),
    (
        "research",
        "dpv:ResearchAndDevelopment",
        "Research and statistics",
        "Recherche et statistiques",
    ),
]

# (code, act, section, English title, French title, permits, consent_required)
LEGAL_AUTHORITIES: list[tuple[str, str, str, str, str, dict, bool]] = [
    (
        "FIPPA-42-1-b",
        "Freedom of Information and Protection of Privacy Act",
        "s. 42(1)(b)",
        "Disclosure with the consent of the person",
        "Divulgation avec le consentement de la personne",
        {"sources": ["*"], "recipients": ["*"], "categories": ["*"], "purposes": ["*"]},
        True,
    ),
    (
        "FIPPA-42-1-c",
        "Freedom of Information and Protection of Privacy Act",
        "s. 42(1)(c)",
        "Disclosure for the purpose for which it was obtained or a consistent purpose",
        "Divulgation aux fins pour lesquelles ils ont été recueillis ou à une fin compatible",
        {
            "sources": ["*"],
            "recipients": ["*"],
            "categories": ["*"],
            "purposes": ["service-provision"],
        },
        False,
    ),
    (
        "FIPPA-42-1-g",
        "Freedom of Information and Protection of Privacy Act",
        "s. 42(1)(g)",
        "Disclosure to aid a law enforcement investigation",
        "Divulgation à un organisme chargé de l'exécution de la loi pour faciliter une enquête",
        {
            "sources": ["*"],
            "recipients": ["SOLGEN"],
            "categories": ["*"],
            "purposes": ["law-enforcement"],
        },
        False,
    ),
    (
        "FIPPA-49-2",
        "Freedom of Information and Protection of Privacy Act",
        "Part III.1, s. 49.2",
        "Collection by a ministry data integration unit",
        "Collecte par une unité d'intégration des données d'un ministère",
        {"sources": ["*"], "recipients": ["*"], "categories": ["*"], "purposes": ["research"]},
        False,
    ),
    (
        "HIA-10",
        "Health Insurance Act",
        "s. 10",
        "Health Insurance Act: collection and disclosure for insured services",
        "Loi sur l'assurance-santé : collecte et divulgation pour les services assurés",
        {
            "sources": ["MOH"],
            "recipients": ["MOH", "MPBSDP"],
            "categories": ["health-number", "name", "address", "birth-date"],
            "purposes": ["service-provision", "identity-verification"],
        },
        False,
    ),
    (
        "HTA-205",
        "Highway Traffic Act",
        "s. 205",
        "Highway Traffic Act: records of the Ministry",
        "Code de la route : dossiers du ministère",
        {
            "sources": ["MTO"],
            "recipients": ["MTO", "SOLGEN", "MPBSDP"],
            "categories": ["driver-licence", "name", "address"],
            "purposes": ["licence-renewal", "law-enforcement"],
        },
        False,
    ),
    (
        "OWA-74",
        "Ontario Works Act, 1997",
        "s. 74",
        "Ontario Works Act: information sharing for eligibility",
        "Loi sur le programme Ontario au travail : échange de renseignements",
        {
            "sources": ["FIN", "MPBSDP", "MLITSD"],
            "recipients": ["MCCSS"],
            "categories": ["income", "family", "employment", "address"],
            "purposes": ["eligibility", "fraud-prevention"],
        },
        False,
    ),
    (
        "TTA-172",
        "Taxation Act, 2007",
        "s. 172",
        "Taxation Act: disclosure for benefit programs",
        "Loi de 2007 sur les impôts : divulgation pour les programmes de prestations",
        {
            "sources": ["FIN"],
            "recipients": ["MCURES", "MCCSS"],
            "categories": ["income", "tax-record"],
            "purposes": ["eligibility", "benefit-calculation"],
        },
        True,
    ),
]

# Standing consents a resident can give from the portal without being asked first:
# (code, recipient, sources, categories, purpose, days, English notice, French notice)
CONSENT_OFFERS: list[tuple[str, str, tuple[str, ...], tuple[str, ...], str, int, str, str]] = [
    (
        "osap-income-yearly",
        "MCURES",
        ("FIN",),
        ("income",),
        "eligibility",
        365,
        "The Ontario Student Assistance Program may receive your income from the Ministry of Finance for one year, to assess your eligibility without asking you for your notice of assessment.",
        "Le Régime d'aide financière aux étudiantes et étudiants de l'Ontario peut recevoir votre revenu du ministère des Finances pendant un an, pour évaluer votre admissibilité sans vous demander votre avis de cotisation.",
    ),
    (
        "mto-address-serviceontario",
        "MTO",
        ("MPBSDP",),
        ("address",),
        "licence-renewal",
        730,
        "The Ministry of Transportation may receive your current address from ServiceOntario for two years, so that you do not need to tell it again when you move.",
        "Le ministère des Transports peut recevoir votre adresse actuelle de ServiceOntario pendant deux ans, pour que vous n'ayez pas à la lui redonner quand vous déménagez.",
    ),
    (
        "ow-income-yearly",
        "MCCSS",
        ("FIN",),
        ("income",),
        "benefit-calculation",
        365,
        "Ontario Works may receive your income from the Ministry of Finance for one year, to calculate your assistance.",
        "Ontario au travail peut recevoir votre revenu du ministère des Finances pendant un an, pour calculer votre aide.",
    ),
]
