"""Word lists the detectors consult: words that are never taken for a name, relationship and title
cue words in several languages, month names, and public figures a lesson may name with a title.

All lists are lower case. They decide between keeping text and removing it, so a word belongs in
``NOT_NAMES`` when it often follows a cue ("I'm Confused", "my friend is Mexican", "Hello World",
"ich bin Schüler") without being a name.
"""

from __future__ import annotations

# Words that follow "I'm" capitalized without being names ("I'm Confused", "I'm Not sure").
COMMON_CAPITALIZED = frozenset("""
a an the not so very really just still also only too here there back home done ready sorry sure unsure
confused lost stuck fine good ok okay great happy sad tired bored new trying working learning going
doing thinking wondering studying struggling having getting looking waiting asking writing reading
finished excited worried scared nervous afraid curious interested glad able unable in on at from with
about almost always never still kind of like pretty bit little more less late early in-between hungry
january february march april may june july august september october november december monday tuesday
wednesday thursday friday saturday sunday will can shall might must would could should did does was is
am are be been being have has had do doing english spanish french american canadian british math science
in-grade grade year student teacher your you he she they we it this that what when where why how which
who one two three four five six seven eight nine ten first second third fourth fifth sixth seventh eighth
ninth tenth eleventh twelfth hi hello hey thanks thank yes no please because but and or if then than
""".split())

_ENGLISH = """
i me my mine myself we us our you your he him his she her it its they them their this that these those
here there now then today tomorrow yesterday tonight again already soon later just only also even still
and or but nor so yet for of to in on at by with from into onto about above below over under after before
between through during without within across against around up down out off near far away
is are was were be been being am do does did done have has had having get got gets getting go goes went
gone going can could will would shall should may might must need needs want wants like likes love hate
help helps helped helping try tried tries stuck lost confused sure unsure fine ok okay good bad great
cool nice fun funny hard easy difficult simple new old young big small little tall short long late early
crazy weird silly sick ill busy free bored tired sleepy hungry happy sad mad angry glad scared afraid
nervous worried excited ready sorry serious honest right wrong correct incorrect true false real fake
not no yes yeah yep nope maybe please thanks thank hi hello hey bye goodbye dear welcome sir madam
what when where why how which who whom whose whatever whenever wherever
one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen twenty hundred
first second third last next other another some any every each all both few many much more most less
least none nothing something anything everything someone anyone everyone nobody somebody anybody
everybody everyone people person guy guys girl girls boy boys kid kids man woman men women friend friends
class classes school grade year years student students pupil pupils teacher teachers tutor homework
test quiz exam lesson lessons question questions answer answers problem problems math maths science
history english art music physics chemistry biology geography french spanish german italian chinese
japanese korean russian hindi arabic latin greek portuguese dutch polish turkish
american british canadian australian mexican indian irish scottish welsh african european asian
brazilian nigerian kenyan egyptian pakistani filipino vietnamese thai swedish norwegian danish finnish
world earth sun moon mars venus mercury jupiter saturn uranus neptune pluto planet planets
god lord diary journal everyone everybody team class group guys all
mom mum mommy mother dad daddy father brother sister parents parent family grandma grandpa
mr mrs ms mx dr prof miss coach
god bless lol omg idk btw pls plz thx ty u ur im
working studying learning reading writing doing trying going coming thinking wondering asking waiting
looking struggling having getting making taking finishing starting practicing practising revising
finished started back home away online offline late early new here there
i'm i’m i'll i've i'd it's it’s that's there's what's let's we're they're you're he's she's don't doesn't
didn't can't won't isn't aren't wasn't weren't couldn't wouldn't shouldn't
senior junior public private primary secondary high middle elementary grammar boarding summer night medical
law business dance driving local catholic christian state community charter international
kinda sorta gonna wanna gotta super totally actually basically literally probably definitely honestly
confusing impossible annoying boring due urgent important tricky complicated weird hard
christmas halloween easter thanksgiving diwali ramadan eid hanukkah passover
google siri alexa chatgpt wikipedia youtube bing
""".split()

_SPANISH_FRENCH_GERMAN = """
de del la las el los un una uno y o e en con sin por para que qué muy mucho poco bien mal aquí allí
estudiante alumno alumna profesor profesora maestro maestra nuevo nueva nuevos perdido perdida confundido
confundida feliz triste listo lista
le les du des et ou à au aux avec sans pour dans sur sous très bien mal ici là élève étudiant étudiante
nouveau nouvelle perdu perdue fatigué fatiguée content contente prêt prête désolé désolée
der die das dem den des ein eine einer eines und oder mit ohne für auf in im am an aus bei nach von zu
sehr gut schlecht hier da neu müde froh traurig fertig verwirrt schüler schülerin lehrer lehrerin
student studentin anfänger anfängerin deutscher deutsche klasse mathe hilfe
il lo gli le un una e o con senza per in su molto bene male qui là studente studentessa nuovo nuova
""".split()

#: Lower-case words never taken for a name after a cue word.
NOT_NAMES = frozenset(COMMON_CAPITALIZED | set(_ENGLISH) | set(_SPANISH_FRENCH_GERMAN))

#: Relationship words after which a capitalized word is a person's name ("my mom Linda", "mi abuela
#: Carmen", "моя учительница Ольга"). With a possessive in front ("my", "mi", "мой" …) or in lower case
#: on their own ("grandma Rosa"); "Mother Teresa" and "Uncle Sam" are not someone's relatives.
RELATIVES = frozenset("""
mom mum mommy mummy mother dad daddy father brother bro sister sis sibling siblings aunt auntie aunty
uncle cousin grandma grandpa granny grandmother grandfather nana nan gran grandad granddad papa mama
stepmom stepmum stepdad stepmother stepfather stepbrother stepsister parents parent guardian twin
step-mom step-mum step-dad step-brother step-sister half-brother half-sister
son daughter husband wife niece nephew godmother godfather
friend friends bff buddy pal classmate classmates teacher teachers tutor coach neighbour neighbor
boyfriend girlfriend babysitter nanny principal headteacher headmaster headmistress counselor counsellor
partner
mamá madre papá padre hermano hermana hermanos abuela abuelo tía tío primo prima amigo amiga amigos
maestro maestra profesor profesora profe vecino vecina novio novia
mère père frère sœur soeur grand-mère grand-père mamie papi papy tante oncle cousine ami amie copain
copine professeur professeure maîtresse maître voisin voisine
mutter vater bruder schwester oma opa onkel freund freundin lehrer lehrerin nachbar nachbarin
mamma papà fratello sorella nonna nonno zia zio amico professore professoressa
mãe pai irmão irmã avó avô tia tio
мама папа мать отец брат сестра бабушка дедушка тётя тетя дядя друг подруга учитель учительница
сосед соседка маму папу сестру брата бабушку
μητέρα μαμά πατέρας μπαμπάς αδερφός αδερφή φίλος φίλη δάσκαλος δασκάλα
""".split())

#: Possessives that make the following relationship word a cue in any case ("My Mom", "mi mamá").
POSSESSIVES = frozenset("""
my our mi mis tu nuestra nuestro ma mon mes notre mein meine meinem meinen meiner unser
unsere mio mia miei mie meu minha мой моя мою моего моей моё мои μου
""".split())

#: Titles before a surname ("Mr. Tanaka", "Frau Schneider"); matched with their capital letter.
TITLES = ("Mr", "Mrs", "Ms", "Mx", "Miss", "Dr", "Prof", "Professor", "Coach", "Mme", "Mlle", "Madame", "Monsieur", "Herr",
          "Frau", "Sr", "Sra", "Srta", "Señor", "Señora", "Señorita", "Profesor", "Profesora", "Maestro",
          "Maestra", "Signor", "Signora")

#: Titled names a lesson talks about (literature, history): "Mr. Darcy" is not the student's teacher.
PUBLIC_FIGURES = frozenset("""
darcy bennet bingley wickham collins knightley rochester havisham dalloway hyde jekyll frankenstein
watson holmes moriarty hudson seuss king utterson scrooge micawber pickwick frizzle rogers bean
doolittle dolittle strangelove zhivago faustus
curie pankhurst thatcher mandela gandhi lincoln roosevelt kennedy churchill einstein newton darwin freud
pasteur nightingale parks mcgonagall snape dumbledore lupin weasley dursley tumnus wonka
""".split())

MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|"
    "enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|"
    "janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre|novembre|décembre|"
    "januar|jänner|februar|märz|maerz|juni|juli|oktober|dezember|"
    "gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|"
    "janeiro|fevereiro|março|maio|junho|julho|setembro|outubro|novembro|dezembro"
)
