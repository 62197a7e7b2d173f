// App Service plan + Linux Web App running the EMRsim sim server, with a `staging`
// slot for blue-green deployment. Secrets are Key Vault references resolved through
// the app's managed identity; nothing secret is stored in app settings.

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('App Service plan name.')
param planName string

@description('Web App name (globally unique).')
param siteName string

@description('App Service plan SKU (Standard or higher for slots).')
param skuName string

@description('Number of instances.')
param instanceCount int

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Key Vault holding the database password.')
param keyVaultName string

@description('PostgreSQL host name.')
param databaseHost string

@description('PostgreSQL login name.')
param databaseUser string

@description('Storage account holding the backups container.')
param storageAccountName string

var readyPath = '/ready'
var keyVaultSecretsUserRole = '4633458b-17de-408a-b874-0445c86b69e6'
var appSettings = [
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    name: 'EMROPS_DB_URL'
    value: 'postgresql+psycopg://${databaseUser}@${databaseHost}:5432/emrsim?sslmode=require'
  }
  {
    name: 'EMROPS_DB_PASSWORD'
    value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=database-password)'
  }
  {
    name: 'EMROPS_BACKUP_STORE'
    value: 'azure://${storageAccountName}/backups'
  }
  {
    name: 'WEBSITE_SWAP_WARMUP_PING_PATH'
    value: readyPath
  }
  {
    name: 'WEBSITE_SWAP_WARMUP_PING_STATUSES'
    value: '200'
  }
  {
    name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'
    value: 'true'
  }
]
var siteConfig = {
  linuxFxVersion: 'PYTHON|3.12'
  appCommandLine: 'python -m emrops sim serve --host 0.0.0.0 --port 8000'
  healthCheckPath: readyPath
  alwaysOn: true
  numberOfWorkers: instanceCount
  http20Enabled: true
  ftpsState: 'Disabled'
  minTlsVersion: '1.2'
  appSettings: appSettings
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  #checkov:skip=CKV_AZURE_225:Zone redundancy needs Premium v3; the Standard plan is sized for a teaching workload
  name: planName
  location: location
  tags: tags
  kind: 'linux'
  sku: {
    name: skuName
    capacity: instanceCount
  }
  properties: {
    reserved: true
    zoneRedundant: false
  }
}

resource site 'Microsoft.Web/sites@2023-12-01' = {
  #checkov:skip=CKV_AZURE_13:App Service Authentication does not apply: the sim API checks its own bearer token (EMROPS_SIM_TOKEN)
  #checkov:skip=CKV_AZURE_17:Client certificates are not used by the browser clients of EMRsim
  #checkov:skip=CKV_AZURE_88:The app keeps no content on Azure Files; state lives in PostgreSQL
  #checkov:skip=CKV_AZURE_222:Public access is required: students reach EMRsim over the internet
  name: siteName
  location: location
  tags: tags
  kind: 'app,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    siteConfig: siteConfig
  }
}

resource stagingSlot 'Microsoft.Web/sites/slots@2023-12-01' = {
  #checkov:skip=CKV_AZURE_13:App Service Authentication does not apply: the sim API checks its own bearer token (EMROPS_SIM_TOKEN)
  #checkov:skip=CKV_AZURE_17:Client certificates are not used by the browser clients of EMRsim
  #checkov:skip=CKV_AZURE_88:The app keeps no content on Azure Files; state lives in PostgreSQL
  #checkov:skip=CKV_AZURE_222:The staging slot is probed from CI runners over the internet before a swap
  parent: site
  name: 'staging'
  location: location
  tags: tags
  kind: 'app,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    siteConfig: siteConfig
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource siteSecretsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, site.id, keyVaultSecretsUserRole)
  scope: vault
  properties: {
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRole)
  }
}

resource slotSecretsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, stagingSlot.id, keyVaultSecretsUserRole)
  scope: vault
  properties: {
    principalId: stagingSlot.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRole)
  }
}

@description('Resource id of the Web App.')
output siteId string = site.id

@description('Web App name.')
output siteName string = site.name

@description('Production host name.')
output defaultHostName string = site.properties.defaultHostName

@description('Staging slot host name.')
output stagingHostName string = stagingSlot.properties.defaultHostName
